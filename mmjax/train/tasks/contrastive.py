"""CLIP (softmax) or SigLIP (sigmoid) image-text training; evaluated by retrieval both ways or zero-shot.

With gradient accumulation each micro-batch's examples are each other's negatives (a smaller effective contrastive
batch); prefer more devices or a smaller model to accumulation for contrastive training.
"""

from __future__ import annotations

import math

import flax.linen as nn

from mmjax import losses
from mmjax.models import CLIP
from mmjax.train.tasks.base import IMAGE_TOWER, TEXT_TOWER, Task, tower_from_config


class ContrastiveTask(Task):
    MODEL_KEYS = {
        "image": IMAGE_TOWER,
        "text": TEXT_TOWER,
        "embed_dim": (512, "width of the shared image-text embedding space"),
        "loss": ("softmax", "softmax (CLIP) or sigmoid (SigLIP) contrastive loss", ("softmax", "sigmoid")),
        "logit_scale_init": (
            None,
            "initial log inverse temperature; None: log(1/0.07) (softmax), log(10) (sigmoid)",
            None,
            float,
        ),
        "logit_bias_init": (
            None,
            "initial logit bias; None: -10 with the sigmoid loss, no bias with softmax",
            None,
            float,
        ),
        "max_logit_scale": (100.0, "exp(logit_scale) is clamped here"),
    }
    DATA_TASK = "image_text"
    DEFAULT_EVALS = {"retrieval": {"type": "retrieval"}}

    def build_model(self, cfg) -> nn.Module:
        sigmoid = cfg.loss == "sigmoid"
        default_scale = math.log(10.0) if sigmoid else math.log(1 / 0.07)
        default_bias = -10.0 if sigmoid else None
        return CLIP(
            image_tower=tower_from_config(cfg.image, self.dtype),
            text_tower=tower_from_config(cfg.text, self.dtype),
            embed_dim=cfg.embed_dim,
            logit_scale_init=default_scale if cfg.logit_scale_init is None else cfg.logit_scale_init,
            logit_bias_init=default_bias if cfg.logit_bias_init is None else cfg.logit_bias_init,
            max_logit_scale=cfg.max_logit_scale,
            dtype=self.dtype,
        )

    def init(self, rng, batch):
        return self.model.init(rng, batch["image"], batch["input_ids"], batch["attention_mask"])["params"]

    def loss(self, params, batch, rng):
        out = self.model.apply(
            {"params": params},
            batch["image"],
            batch["input_ids"],
            batch["attention_mask"],
            train=True,
            rngs={"dropout": rng},
        )
        sigmoid = self.config.model.loss == "sigmoid"
        loss_fn = losses.sigmoid_contrastive_loss if sigmoid else losses.softmax_contrastive_loss
        loss, metrics = loss_fn(out["logits_per_image"])
        return loss, {**metrics, "logit_scale": out["logit_scale"]}

    def encode_image(self, params, image):
        """Normalized image embeddings [B, E]."""
        return self.model.apply({"params": params}, image, method="encode_image")

    def encode_text(self, params, input_ids, attention_mask):
        """Normalized text embeddings [N, E]."""
        return self.model.apply({"params": params}, input_ids, attention_mask, method="encode_text")
