"""CLIP (softmax) or SigLIP (sigmoid) image-text training; evaluated by retrieval both ways or zero-shot.

With gradient accumulation (optim.grad_accum_steps = k) the negatives are still the whole batch's (GradCache, as
open_clip's --accum-freq): every micro-batch's embeddings are computed without keeping activations, the loss and
its gradient with respect to the embeddings over the whole batch, then each micro-batch's forward is run again and
back-propagated from its share of those gradients. Loss and gradients equal the whole batch's; activation memory is
one micro-batch's (tests/train/test_contrastive_accumulation.py).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import losses
from mmjax.models import CLIP
from mmjax.train.step import split_micro
from mmjax.train.tasks.base import IMAGE_TOWER, TEXT_TOWER, Task, tower_from_config


class ContrastiveTask(Task):
    MODEL_KEYS = {
        "image": IMAGE_TOWER,
        "text": TEXT_TOWER,
        "embed_dim": (512, "width of the shared image-text embedding space"),
        "loss": ("softmax", "softmax (CLIP) or sigmoid (SigLIP) contrastive loss", ("softmax", "sigmoid")),
        "loss_impl": (
            "global",
            "global: the [B, B] logits, rows split over devices; ring: SigLIP's chunked ring, texts passed "
            "device to device, at most (B/n)^2 logits per device (same loss)",
            ("global", "ring"),
        ),
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
        return self.model.init(rng, self.media(batch), batch["input_ids"], batch["attention_mask"])["params"]

    def loss(self, params, batch, rng):
        out = self.model.apply(
            {"params": params},
            self.media(batch),
            batch["input_ids"],
            batch["attention_mask"],
            train=True,
            rngs={"dropout": rng},
        )
        loss, metrics = self._contrastive_loss(out)
        return loss, {**metrics, "logit_scale": out["logit_scale"]}

    def accumulate(self, params, batch, rng, steps: int, *, freeze=lambda p: p):
        """(loss, metrics, grads) of the whole batch, computed `steps` micro-batches at a time (GradCache)."""
        micro = split_micro(batch, steps)
        keys = jax.random.split(rng, steps)

        def embed(p, mb, key):
            p = freeze(p)
            image = self.model.apply(
                {"params": p}, self.media(mb), train=True, rngs={"dropout": key}, method="encode_image"
            )
            text = self.model.apply(
                {"params": p},
                mb["input_ids"],
                mb["attention_mask"],
                train=True,
                rngs={"dropout": jax.random.fold_in(key, 1)},
                method="encode_text",
            )
            return image, text

        # 1. every micro-batch's embeddings, no activations kept (nothing is differentiated through here)
        constant = jax.lax.stop_gradient(params)
        images, texts = jax.lax.map(lambda xs: embed(constant, *xs), (micro, keys))  # [k, b, E] each

        # 2. the loss over the whole batch, and its gradient w.r.t. the embeddings (and the temperature)
        def whole(image, text, p):
            e = image.shape[-1]
            out = self.model.apply({"params": p}, image.reshape(-1, e), text.reshape(-1, e), method="similarity")
            loss, metrics = self._contrastive_loss(out)
            return loss, {**metrics, "logit_scale": out["logit_scale"]}

        (loss, metrics), (d_images, d_texts, grads) = jax.value_and_grad(whole, argnums=(0, 1, 2), has_aux=True)(
            images, texts, freeze(params)
        )

        # 3. each micro-batch's forward again, back-propagated from its share of those gradients
        def add_micro(total, xs):
            mb, key, d_image, d_text = xs
            _, vjp = jax.vjp(lambda p: embed(p, mb, key), params)
            return jax.tree.map(jnp.add, total, vjp((d_image, d_text))[0]), None

        grads, _ = jax.lax.scan(add_micro, grads, (micro, keys, d_images, d_texts))
        return loss, metrics, grads

    def _contrastive_loss(self, out: dict):
        """The loss from the model's outputs; with `loss_impl='ring'` from the embeddings (the logits the model
        also returns are then unused, and XLA drops them)."""
        cfg = self.config.model
        if cfg.loss_impl == "ring":
            return losses.ring_contrastive_loss(
                out["image_embeds"], out["text_embeds"], out["logit_scale"], out.get("logit_bias"), kind=cfg.loss
            )
        loss_fn = losses.sigmoid_contrastive_loss if cfg.loss == "sigmoid" else losses.softmax_contrastive_loss
        return loss_fn(out["logits_per_image"])

    def encode_image(self, params, image):
        """Normalized image embeddings [B, E]."""
        return self.model.apply({"params": params}, image, method="encode_image")

    def encode_text(self, params, input_ids, attention_mask):
        """Normalized text embeddings [N, E]."""
        return self.model.apply({"params": params}, input_ids, attention_mask, method="encode_text")
