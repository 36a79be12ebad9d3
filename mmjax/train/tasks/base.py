"""The Task protocol, and what every task shares: dtype names, towers from config, placeholder batches.

A task joins a model from `models/` to its loss and to the predict functions its evaluators call. It is built from
the resolved config and a `DatasetInfo` (answers, classes, splits: computed once by the trainer), so no task opens
a dataset. What a task declares for the config schema:
  MODEL_KEYS     the keys of `config.model` (a `Named("tower", ...)` group takes a tower's own fields)
  DATA_TASK      the record layout it reads ('image_text' | 'vqa'), unless the config states data.task
  DEFAULT_EVALS  `config.evals` when the config states none
What it supplies: `model`, `init_batch()`, `init(rng, batch)` (boxed params), `loss(params, batch, rng)`,
`step_batch(batch_size)` (placeholder batches for `mmjax bench`), and the predict methods its evaluators name in
their NEEDS (`encode_image`/`encode_text`, `predict_scores`, `generate`/`text`, `predict_pretrain`): a task
serves exactly the evaluators whose needs it has.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from mmjax import data as mmdata
from mmjax.config.schema import Named
from mmjax.encoders import build_tower

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

IMAGE_TOWER = Named("tower", "vit", "the image tower: {name, ...fields of that encoder}")
TEXT_TOWER = Named("tower", "clip_text", "the text tower: {name, ...fields of that encoder}")


def tower_from_config(cfg: ml_collections.ConfigDict, dtype) -> nn.Module:
    """A resolved tower group {name, [variant], ...fields} -> the tower, computing in `dtype`."""
    kwargs = cfg.to_dict()
    name = kwargs.pop("name")
    kwargs.pop("variant", None)  # already expanded into the size fields by the schema
    return build_tower(name, dtype=dtype, **kwargs)


def to_host(tree):
    """Global (possibly multi-process) jax.Arrays -> full numpy arrays on every process."""
    return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)


class Task:
    MODEL_KEYS: ClassVar[dict] = {}
    DATA_TASK: ClassVar[str | None] = None
    DEFAULT_EVALS: ClassVar[dict] = {}

    def __init__(self, config: ml_collections.ConfigDict, info: mmdata.DatasetInfo):
        self.config, self.info = config, info
        self.dtype = DTYPES[config.model.dtype]
        self.model = self.build_model(config.model)

    @classmethod
    def validate_config(cls, config: ml_collections.ConfigDict) -> None:
        """Checks of `config.model` beyond the schema's, raising ConfigError naming the key (before any work)."""

    @functools.cached_property
    def tokenizer(self) -> mmdata.TextTokenizer:
        """The tokenizer the data pipeline uses (tasks need its special ids, decoding, prompts)."""
        return mmdata.tokenizer_from_config(self.config.data.tokenizer)

    def build_model(self, cfg) -> nn.Module:
        raise NotImplementedError

    def init(self, rng, batch):
        raise NotImplementedError

    def loss(self, params, batch, rng):
        raise NotImplementedError

    def init_batch(self) -> dict[str, np.ndarray]:
        """One example with the shapes the model is initialized with (image-text by default)."""
        data, length = self.config.data, self.config.data.tokenizer.max_length
        text = {"input_ids": np.zeros((1, length), np.int32), "attention_mask": np.ones((1, length), np.int32)}
        batch = {}
        if data.audio_samples:
            samples = data.audio_samples
            batch |= {"audio": np.zeros((1, samples), np.float32), "audio_length": np.full((1,), samples, np.int32)}
        if data.num_frames or not data.audio_samples:  # a clip [T, S, S, 3] (with its soundtrack), or an image
            frames = (data.num_frames,) if data.num_frames else ()
            batch["image"] = np.zeros((1, *frames, data.image_size, data.image_size, 3), np.float32)
        return batch | text

    @staticmethod
    def media(batch):
        """What the model's visual slot takes from a batch: pixels [B, S, S, 3], a clip [B, T, S, S, 3], or audio as
        (waveforms [B, S], lengths [B]) for a tower with a frontend. A batch holding a clip and its soundtrack gives
        the clip (the soundtrack is `Task.audio`'s)."""
        if "image" not in batch:
            return Task.audio(batch)
        return batch["image"]

    @staticmethod
    def audio(batch):
        """A batch's audio as an audio tower takes it: (waveforms [B, S], lengths [B])."""
        return batch["audio"], batch["audio_length"]

    def step_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        """A batch of `batch_size` placeholder examples holding every key the train step reads: what
        `mmjax bench` times the step on, apart from the input pipeline. Tasks whose loss reads targets add them."""
        batch = {k: np.repeat(v, batch_size, axis=0) for k, v in self.init_batch().items()}
        return {**batch, "example_mask": np.ones((batch_size,), np.int32)}
