"""Transformer decoder: causal self-attention + cross-attention to a memory (e.g. visual tokens) + MLP, pre-LN,
with a key/value cache for autoregressive decoding.

The cache lives in the Linen 'cache' collection (flax's decode pattern). A call with `index` given runs in cache
mode: the first such call (applied with mutable=['cache'] and no cache yet) creates the cache and stores the
memory's cross-attention keys/values; later calls write the new tokens' keys/values at positions
[index, index + T) and read the memory keys/values back instead of recomputing them. The position index is an
argument rather than a cache variable, so the decoding loop owns the one step counter.

Parameter names (stable):
  DecoderAttention: `query`, `key`, `value`, `out`, the same names and shapes as MultiHeadAttention.
  DecoderBlock:     `ln_1`, `self_attn`, `ln_2`, `cross_attn`, `ln_3`, `mlp` (Mlp: fc1, fc2).
  Decoder:          `layer_0` ... `layer_{n-1}`, `ln_final`.
Cache variables: `self_attn/cached_key`, `self_attn/cached_value` [B, max_length, H, Dh];
  `cross_attn/cross_key`, `cross_attn/cross_value` [B, T_mem, H, Dh].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.layers.attention import (
    HeadProjection,
    OutputProjection,
    attend,
    causal_mask,
    combine_masks,
    padding_mask,
)
from mmjax.layers.transformer import Mlp, layer_norm

Dtype = jnp.dtype | type


class DecoderAttention(nn.Module):
    """Multi-head attention with an optional key/value cache.

    Call: (x [B, T, D], memory [B, Tm, Dm] for cross-attention else None, mask [B|1, 1, T, Tk] bool or None,
    index=None | int32 scalar) -> [B, T, D].
    Self-attention in cache mode ignores `mask` and attends causally over cache positions <= the query's own.
    """

    num_heads: int
    cross: bool = False
    max_length: int = 0
    dropout_rate: float = 0.0
    attention_impl: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _proj(self, name, head_dim):
        return HeadProjection(self.num_heads, head_dim, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

    @nn.compact
    def __call__(self, x, memory=None, mask=None, *, index=None, deterministic: bool = True):
        features = x.shape[-1]
        if features % self.num_heads:
            raise ValueError(f"width {features} is not divisible by num_heads {self.num_heads}")
        head_dim = features // self.num_heads
        q = self._proj("query", head_dim)(x)
        if self.cross:
            k, v = self._cross_keys_values(memory, head_dim, cached=index is not None)
        else:
            k = self._proj("key", head_dim)(x)
            v = self._proj("value", head_dim)(x)
            if index is not None:
                k, v, mask = self._update_cache(k, v, index)
        q, k, v = (nn.with_logical_constraint(t, ("batch", "length", "heads", "kv")) for t in (q, k, v))
        out = attend(q, k, v, mask, self.dropout_rate, deterministic, self.attention_impl)
        return OutputProjection(features, dtype=self.dtype, param_dtype=self.param_dtype, name="out")(out)

    def _cross_keys_values(self, memory, head_dim, cached: bool):
        if cached and self.has_variable("cache", "cross_key"):
            return self.get_variable("cache", "cross_key"), self.get_variable("cache", "cross_value")
        if memory is None:
            raise ValueError("cross-attention needs `memory` on its first call")
        k = self._proj("key", head_dim)(memory)
        v = self._proj("value", head_dim)(memory)
        if cached:
            self.put_variable("cache", "cross_key", k)
            self.put_variable("cache", "cross_value", v)
        return k, v

    def _update_cache(self, k, v, index):
        b, t, h, d = k.shape
        if not self.max_length:
            raise ValueError("DecoderAttention needs max_length > 0 to decode with a cache")
        cached_k = self.variable("cache", "cached_key", jnp.zeros, (b, self.max_length, h, d), k.dtype)
        cached_v = self.variable("cache", "cached_value", jnp.zeros, (b, self.max_length, h, d), v.dtype)
        index = jnp.asarray(index, jnp.int32)
        cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, (0, index, 0, 0))
        cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, (0, index, 0, 0))
        query_pos = index + jnp.arange(t)
        visible = jnp.arange(self.max_length)[None, :] <= query_pos[:, None]  # [T, max_length]
        return cached_k.value, cached_v.value, visible[None, None]


class DecoderBlock(nn.Module):
    """One pre-LN decoder layer: x [B, T, D], memory [B, Tm, Dm] -> [B, T, D].

    self_mask: [B|1, 1, T, T] bool for the full-sequence path (ignored in cache mode, which is causal by
    construction); memory_mask: [B, 1, 1, Tm] bool or None.
    """

    num_heads: int
    mlp_dim: int
    max_length: int = 0
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, memory, self_mask=None, memory_mask=None, *, index=None, deterministic: bool = True):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn_kw = dict(dropout_rate=self.attention_dropout_rate, attention_impl=self.attention_impl, **kw)
        drop = nn.Dropout(self.dropout_rate)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        y = layer_norm(self.layer_norm_eps, name="ln_1", **kw)(x)
        y = DecoderAttention(self.num_heads, max_length=self.max_length, name="self_attn", **attn_kw)(
            y, None, self_mask, index=index, deterministic=deterministic
        )
        x = x + drop(y, deterministic=deterministic)
        y = layer_norm(self.layer_norm_eps, name="ln_2", **kw)(x)
        y = DecoderAttention(self.num_heads, cross=True, name="cross_attn", **attn_kw)(
            y, memory, memory_mask, index=index, deterministic=deterministic
        )
        x = x + drop(y, deterministic=deterministic)
        y = layer_norm(self.layer_norm_eps, name="ln_3", **kw)(x)
        y = Mlp(self.mlp_dim, self.activation, self.dropout_rate, name="mlp", **kw)(y, deterministic=deterministic)
        x = x + drop(y, deterministic=deterministic)
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class Decoder(nn.Module):
    """A stack of DecoderBlocks and a final LayerNorm: x [B, T, D], memory [B, Tm, Dm] -> [B, T, D].

    mask: [B, T] validity of x (full-sequence path only); memory_mask: [B, Tm] validity of the memory.
    index: None for the full causal sequence (teacher forcing); an int32 scalar for cache mode, where x holds the
    tokens at positions [index, index + T).
    max_length: the cache size (longest sequence cache mode can produce).
    """

    num_layers: int
    num_heads: int
    mlp_dim: int
    max_length: int
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, memory, mask=None, memory_mask=None, *, index=None, deterministic: bool = True):
        self_mask = None
        if index is None:
            self_mask = combine_masks(padding_mask(mask), causal_mask(x.shape[1]))
        cross_mask = padding_mask(memory_mask)
        for i in range(self.num_layers):
            x = DecoderBlock(
                self.num_heads,
                self.mlp_dim,
                max_length=self.max_length,
                activation=self.activation,
                layer_norm_eps=self.layer_norm_eps,
                dropout_rate=self.dropout_rate,
                attention_dropout_rate=self.attention_dropout_rate,
                attention_impl=self.attention_impl,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"layer_{i}",
            )(x, memory, self_mask, cross_mask, index=index, deterministic=deterministic)
        return layer_norm(self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype, name="ln_final")(x)
