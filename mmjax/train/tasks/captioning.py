"""Captioning: an image tower + a transformer decoder trained with teacher forcing; BLEU-4 and CIDEr at eval.

The decoder uses the data tokenizer's start and end tokens. Padding gets its own id (one row past the
tokenizer's vocabulary) because CLIP's tokenizer pads with its end token, and a decoder that may not emit
padding must still be able to emit the end. The decoder's vocabulary and length follow the tokenizer's.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax import losses
from mmjax.models import Captioner, greedy_decode
from mmjax.train.tasks.base import IMAGE_TOWER, Task, tower_from_config


class CaptioningTask(Task):
    MODEL_KEYS = {
        "image": IMAGE_TOWER,
        "width": (512, "decoder width"),
        "num_layers": (6, "decoder layers"),
        "num_heads": (8, "decoder attention heads"),
        "mlp_dim": (None, "decoder MLP width; None: 4 x width", None, int),
        "dropout_rate": (0.0, "decoder dropout"),
    }
    DATA_TASK = "image_text"
    DEFAULT_EVALS = {"captioning": {"type": "captioning"}}

    def __init__(self, config, info):
        self.config = config
        eos = self.tokenizer.end_id
        if eos is None:  # decoding could never stop
            raise ValueError(
                "config key 'data.tokenizer': captioning needs a tokenizer that ends every text with a token"
            )
        bos = int(self.tokenizer("")["input_ids"][0][0])  # "" -> [start, end, pad...]
        self.bos_id, self.eos_id, self.pad_id = bos, eos, self.tokenizer.vocab_size
        super().__init__(config, info)

    def build_model(self, cfg) -> nn.Module:
        return Captioner(
            image_tower=tower_from_config(cfg.image, self.dtype),
            vocab_size=self.tokenizer.vocab_size + 1,
            max_length=self.config.data.tokenizer.max_length,
            width=cfg.width,
            num_layers=cfg.num_layers,
            num_heads=cfg.num_heads,
            mlp_dim=cfg.mlp_dim,
            dropout_rate=cfg.dropout_rate,
            bos_id=self.bos_id,
            eos_id=self.eos_id,
            pad_id=self.pad_id,
            dtype=self.dtype,
        )

    def init(self, rng, batch):
        return self.model.init(rng, self.media(batch), batch["input_ids"], batch["attention_mask"])["params"]

    def loss(self, params, batch, rng):
        mask = batch["attention_mask"]
        ids = jnp.where(mask > 0, batch["input_ids"], self.pad_id)
        logits = self.model.apply({"params": params}, self.media(batch), ids, mask, train=True, rngs={"dropout": rng})
        # logits[:, t] predicts token t + 1; the end token is a target, padding is not.
        return losses.masked_cross_entropy(logits[:, :-1], ids[:, 1:], mask[:, 1:])

    def generate(self, params, image):
        """Greedy captions: token ids [B, max_length] (start token first)."""
        return greedy_decode(self.model, {"params": params}, image)

    def text(self, ids) -> str:
        """Token ids (a generated or a reference caption) -> the caption, without start, end and padding."""
        ids = list(ids)
        if self.eos_id in ids[1:]:
            ids = ids[: ids.index(self.eos_id, 1)]
        return self.tokenizer.decode([i for i in ids if i < self.tokenizer.vocab_size])
