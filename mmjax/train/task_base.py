"""What every task shares: dtype names, towers from config, the eval-split pipeline, host gathering."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from mmjax import data as mmdata
from mmjax.encoders import build_tower

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype_of(name: str):
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[name]


def tower_from_config(cfg: ml_collections.ConfigDict, dtype) -> nn.Module:
    """{name: 'vit', variant: 'Ti/16', ...fields} -> the tower, computing in `dtype`."""
    kwargs = cfg.to_dict()
    name = kwargs.pop("name")
    return build_tower(name, dtype=dtype, **kwargs)


def tokenizer_of(config: ml_collections.ConfigDict) -> mmdata.TextTokenizer:
    """The tokenizer the data pipeline uses for `config` (tasks need its special ids and decoding)."""
    return mmdata.tokenizer_from_config(config.data.tokenizer)


def check_text_vocab(config: ml_collections.ConfigDict) -> None:
    """A text tower whose embedding table is smaller than the tokenizer's vocabulary would clamp the higher ids
    to its last row without a word (jnp.take): fail first, naming both keys."""
    text = config.model.get("text", None)
    if text is None or "vocab_size" not in text:
        return
    ids = tokenizer_of(config).vocab_size
    if ids > text.vocab_size:
        raise ValueError(
            f"config key 'model.text.vocab_size' is {text.vocab_size}, smaller than the {ids} ids of the tokenizer "
            f"that data.tokenizer describes (kind {config.data.tokenizer.get('kind', 'clip')!r})"
        )


def to_host(tree):
    """Global (possibly multi-process) jax.Arrays -> full numpy arrays on every process."""
    return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)


class Task:
    """Shared plumbing; subclasses define build_model, init_batch, init, loss and evaluate (see tasks.py)."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        check_text_vocab(config)
        self.dtype = dtype_of(config.model.get("dtype", "float32"))
        self.model = self.build_model(config.model)

    def build_model(self, cfg) -> nn.Module:
        raise NotImplementedError

    def data_config(self, **overrides) -> ml_collections.ConfigDict:
        cfg = ml_collections.ConfigDict(self.config.data.to_dict())
        for k, v in overrides.items():
            cfg[k] = v
        return cfg

    def eval_data(self, mesh, split: str | None = None, **overrides):
        """One ordered pass over the eval split (last batch padded; `example_mask` marks real rows)."""
        cfg = self.data_config(**overrides)
        cfg.batch_size = self.config.get("eval", {}).get("batch_size", self.config.batch_size)
        split = split or self.config.get("eval", {}).get("split", "validation")
        return mmdata.build_pipeline(cfg, split, train=False, mesh=mesh)

    def init_batch(self) -> dict[str, np.ndarray]:
        """One example with the shapes the model is initialized with (image-text by default)."""
        return self.image_text_batch()

    def step_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        """A batch of `batch_size` placeholder examples holding every key the train step reads: what
        `mmjax bench` times the step on, apart from the input pipeline. Tasks whose loss reads targets add them."""
        batch = {k: np.repeat(v, batch_size, axis=0) for k, v in self.init_batch().items()}
        return {**batch, "example_mask": np.ones((batch_size,), np.int32)}

    def init(self, rng, batch):
        """Boxed parameters; the default suits models called as model(image, input_ids, attention_mask)."""
        return self.model.init(rng, batch["image"], batch["input_ids"], batch["attention_mask"])["params"]

    def image_text_batch(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """Zeros shaped like an image-text batch of the configured sizes (for init)."""
        size, length = self.config.data.image_size, self.config.data.tokenizer.max_length
        return {
            "image": np.zeros((batch_size, size, size, 3), np.float32),
            "input_ids": np.zeros((batch_size, length), np.int32),
            "attention_mask": np.ones((batch_size, length), np.int32),
        }
