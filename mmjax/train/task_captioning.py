"""Captioning: an image tower + a transformer decoder trained with teacher forcing; BLEU-4 and CIDEr at eval.

The decoder uses the data tokenizer's start and end tokens. Padding gets its own id (one row past the
tokenizer's vocabulary) because CLIP's tokenizer pads with its end token, and a decoder that may not emit
padding must still be able to emit the end.
config.model: image {tower}, width, num_layers, num_heads, mlp_dim, dropout_rate; eval greedy-decodes.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmjax import losses
from mmjax.eval import captioning_metrics
from mmjax.models import Captioner, greedy_decode
from mmjax.train.task_base import Task, to_host, tokenizer_of, tower_from_config


class CaptioningTask(Task):
    def __init__(self, config):
        self.tok = tokenizer_of(config)
        bos, eos = (int(i) for i in self.tok("")["input_ids"][0][:2])  # "" tokenizes to [start, end, pad...]
        self.bos_id, self.eos_id, self.pad_id = bos, eos, self.tok.vocab_size
        super().__init__(config)

    def build_model(self, cfg) -> nn.Module:
        return Captioner(
            image_tower=tower_from_config(cfg.image, self.dtype),
            vocab_size=self.tok.vocab_size + 1,
            max_length=self.config.data.tokenizer.max_length,
            width=cfg.width,
            num_layers=cfg.num_layers,
            num_heads=cfg.num_heads,
            mlp_dim=cfg.get("mlp_dim", None),
            dropout_rate=cfg.get("dropout_rate", 0.0),
            bos_id=self.bos_id,
            eos_id=self.eos_id,
            pad_id=self.pad_id,
            dtype=self.dtype,
        )

    def loss(self, params, batch, rng):
        mask = batch["attention_mask"]
        ids = jnp.where(mask > 0, batch["input_ids"], self.pad_id)
        logits = self.model.apply({"params": params}, batch["image"], ids, mask, train=True, rngs={"dropout": rng})
        # logits[:, t] predicts token t + 1; the end token is a target, padding is not.
        return losses.masked_cross_entropy(logits[:, :-1], ids[:, 1:], mask[:, 1:])

    def text(self, ids) -> str:
        ids = list(ids)
        if self.eos_id in ids[1:]:
            ids = ids[: ids.index(self.eos_id, 1)]
        return self.tok.decode([i for i in ids if i < self.tok.vocab_size])

    def evaluate(self, params, mesh, split: str | None = None) -> dict[str, Any]:
        variables = {"params": params}
        predictions, references = [], []
        for batch in self.eval_data(mesh, split, captions="all"):
            tokens = to_host(greedy_decode(self.model, variables, batch["image"]))
            real = to_host(batch["example_mask"]).astype(bool)
            ids, cmask = to_host(batch["input_ids"]), to_host(batch["caption_mask"]).astype(bool)
            for b in np.flatnonzero(real):
                predictions.append(self.text(tokens[b]))
                references.append([self.text(ids[b, k]) for k in np.flatnonzero(cmask[b])])
        metrics = captioning_metrics(predictions, references)
        self.samples = list(zip(predictions[:8], [r[0] for r in references[:8]]))
        return metrics
