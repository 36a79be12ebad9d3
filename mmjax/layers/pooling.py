"""Pooling heads that turn a token sequence into one vector."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax.layers.attention import MultiHeadAttention, padding_mask
from mmjax.layers.transformer import Mlp, layer_norm

Dtype = jnp.dtype | type


class MAPHead(nn.Module):
    """Multihead attention pooling: a learned probe attends over the tokens, then an MLP residual.

    [B, T, D] (+ optional [B, T] validity mask) -> [B, D]. Parameter names: `probe` [1, 1, D], `attn`, `ln`, `mlp`.
    `activation` is the MLP's (a ViT passes its own, as big_vision and Hugging Face's SigLIP head do).
    """

    num_heads: int
    mlp_dim: int | None = None
    layer_norm_eps: float = 1e-6
    activation: str = "gelu"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask=None):
        b, _, d = x.shape
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        probe = self.param(
            "probe",
            nn.with_logical_partitioning(nn.initializers.xavier_uniform(), (None, None, "embed")),
            (1, 1, d),
            self.param_dtype,
        )
        probe = jnp.tile(jnp.asarray(probe, self.dtype), (b, 1, 1))
        attn_mask = padding_mask(mask)
        x = MultiHeadAttention(self.num_heads, name="attn", **kw)(probe, x, mask=attn_mask)
        y = layer_norm(self.layer_norm_eps, name="ln", **kw)(x)
        x = x + Mlp(self.mlp_dim or 4 * d, self.activation, name="mlp", **kw)(y)
        return x[:, 0]
