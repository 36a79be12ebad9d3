"""CLIP / SigLIP: any image tower and any text tower, joined by linear projections into one embedding space.

Parameter names (stable): `image_tower`, `text_tower`, `image_projection` and `text_projection` (kernel
[tower width, embed_dim]; absent with embed_dim=None), `logit_scale` (a scalar, log of the temperature's inverse),
`logit_bias` (SigLIP only).
Argument and output names follow Hugging Face's CLIPModel, so code written against it reads the same here.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.layers import Encoded, dense

Dtype = jnp.dtype | type


def l2_normalize(x, eps: float = 1e-12):
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


class CLIP(nn.Module):
    """Two-tower contrastive model.

    image_tower: a module mapping pixel_values [B, H, W, C] to an Encoded (e.g. encoders.ViT, encoders.ResNet).
    text_tower:  a module mapping input_ids [B, T] (+ attention_mask, token_type_ids) to an Encoded
                 (e.g. encoders.TextTransformer, encoders.Bert).
    embed_dim:   width of the shared embedding space; None: no projections, the towers' pooled vectors are the
                 embeddings (Hugging Face's SigLIP, whose towers end in their own heads).
    logit_scale_init: initial log inverse temperature (CLIP: log(1/0.07); SigLIP: log(10)).
    max_logit_scale:  exp(logit_scale) is clamped here (CLIP clamps at 100 so training cannot blow it up).
    logit_bias_init:  None for CLIP; SigLIP's learned bias, initialized at -10.
    """

    image_tower: nn.Module
    text_tower: nn.Module
    embed_dim: int | None = 512
    projection_bias: bool = False
    logit_scale_init: float = math.log(1 / 0.07)
    max_logit_scale: float = 100.0
    logit_bias_init: float | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        kw = dict(use_bias=self.projection_bias, dtype=self.dtype, param_dtype=self.param_dtype)
        if self.embed_dim is not None:
            self.image_projection = dense(self.embed_dim, ("embed", "mlp"), name="image_projection", **kw)
            self.text_projection = dense(self.embed_dim, ("embed", "mlp"), name="text_projection", **kw)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(self.logit_scale_init), ())
        if self.logit_bias_init is not None:
            self.logit_bias = self.param("logit_bias", nn.initializers.constant(self.logit_bias_init), ())

    def image_features(self, pixel_values, *, train: bool = False) -> tuple[Encoded, jax.Array]:
        """-> (the image tower's Encoded, normalized image embeddings [B, embed_dim])."""
        enc = self.image_tower(pixel_values, train=train)
        return enc, l2_normalize(enc.pooled if self.embed_dim is None else self.image_projection(enc.pooled))

    def text_features(
        self, input_ids, attention_mask=None, token_type_ids=None, *, train: bool = False
    ) -> tuple[Encoded, jax.Array]:
        """-> (the text tower's Encoded, normalized text embeddings [B, embed_dim])."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        enc = self.text_tower(input_ids, attention_mask, train=train, **extra)
        return enc, l2_normalize(enc.pooled if self.embed_dim is None else self.text_projection(enc.pooled))

    def encode_image(self, pixel_values, *, train: bool = False) -> jax.Array:
        """pixel_values [B, H, W, C] -> L2-normalized image embeddings [B, embed_dim] (float32)."""
        return self.image_features(pixel_values, train=train)[1]

    def encode_text(self, input_ids, attention_mask=None, token_type_ids=None, *, train: bool = False):
        """input_ids [B, T] (+ mask) -> L2-normalized text embeddings [B, embed_dim] (float32)."""
        return self.text_features(input_ids, attention_mask, token_type_ids, train=train)[1]

    def temperature(self) -> tuple[jax.Array, jax.Array | None]:
        """-> (clamped exp(logit_scale), logit_bias or None)."""
        scale = jnp.minimum(jnp.exp(self.logit_scale), self.max_logit_scale)
        return scale, (self.logit_bias if self.logit_bias_init is not None else None)

    def __call__(self, pixel_values, input_ids, attention_mask=None, token_type_ids=None, *, train=False):
        """Both towers and the similarity logits.

        Returns a dict with Hugging Face's names: image_embeds [B_i, E], text_embeds [B_t, E], logits_per_image
        [B_i, B_t], logits_per_text [B_t, B_i], logit_scale (clamped exp), logit_bias (SigLIP; else absent),
        vision_model_output / text_model_output ({last_hidden_state, pooler_output, attention_mask}).
        """
        image_enc, image_embeds = self.image_features(pixel_values, train=train)
        text_enc, text_embeds = self.text_features(input_ids, attention_mask, token_type_ids, train=train)
        out = self.similarity(image_embeds, text_embeds)
        out.update(vision_model_output=tower_output(image_enc), text_model_output=tower_output(text_enc))
        return out

    def similarity(self, image_embeds, text_embeds) -> dict:
        """Normalized embeddings [B_i, E], [B_t, E] -> {image_embeds, text_embeds, logits_per_text [B_t, B_i],
        logits_per_image, logit_scale (clamped exp), logit_bias (SigLIP)}: the one place logits are formed (the
        contrastive task calls it on a whole batch's embeddings gathered micro-batch by micro-batch)."""
        scale, bias = self.temperature()
        logits_per_text = scale * text_embeds @ image_embeds.T
        if bias is not None:
            logits_per_text = logits_per_text + bias
        out = {
            "image_embeds": image_embeds,
            "text_embeds": text_embeds,
            "logits_per_text": logits_per_text,
            "logits_per_image": logits_per_text.T,
            "logit_scale": scale,
        }
        if bias is not None:
            out["logit_bias"] = bias
        return out


def tower_output(enc: Encoded) -> dict:
    """Encoded -> the Hugging Face names for a tower's outputs."""
    return {"last_hidden_state": enc.tokens, "pooler_output": enc.pooled, "attention_mask": enc.mask}
