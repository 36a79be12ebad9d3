"""Multi-head attention (self and cross) with padding and causal masks.

Parameter names (stable; converters depend on them): `query`, `key`, `value` with kernel [embed, heads, kv] and
bias [heads, kv] (none on `key` when key_bias=False); `out` with kernel [heads, kv, embed] and bias [embed].
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype | type
Initializer = Callable[..., jax.Array]


def padding_mask(kv_mask: jax.Array | None) -> jax.Array | None:
    """[B, Tk] key validity mask -> [B, 1, 1, Tk] bool attention mask, broadcast over queries (None if None).

    Queries are deliberately not masked: a padded query row with every key masked would get a uniform (XLA) or
    NaN/zero (fused kernels) softmax, while attending to the real keys keeps it finite. Padded positions are
    excluded downstream (pooling, losses), never used as real tokens.
    """
    if kv_mask is None:
        return None
    return kv_mask.astype(bool)[:, None, None, :]


def causal_mask(length: int) -> jax.Array:
    """[1, 1, T, T] bool lower-triangular mask: position i attends to positions <= i."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]


def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
    masks = [m for m in masks if m is not None]
    if not masks:
        return None
    out = masks[0]
    for m in masks[1:]:
        out = jnp.logical_and(out, m)
    return out


_FUSED_DTYPES = (jnp.bfloat16, jnp.float16)


def fused_attention_applies(q, k, mask) -> str | None:
    """Why cuDNN's fused attention cannot take these operands, or None when it can.

    The conditions are those `jax.nn.dot_product_attention(implementation='cudnn')` checks (a GPU, 16-bit
    operands, a head dim that is a multiple of 8 up to 128), plus even lengths when a mask is given: cuDNN's
    training kernels take only even lengths, and a mask (which cuDNN takes as a bias) leaves no room to pad.
    Unmasked odd lengths (ViT-B/16's 197 tokens) are padded by `fused_attention`.
    """
    if jax.default_backend() != "gpu":
        return f"backend is {jax.default_backend()}, not gpu"
    if q.dtype not in _FUSED_DTYPES:
        return f"dtype {q.dtype} (cuDNN takes bfloat16 or float16)"
    if q.shape[-1] % 8 or q.shape[-1] > 128:
        return f"head dim {q.shape[-1]} (cuDNN takes multiples of 8 up to 128)"
    if mask is not None and (q.shape[1] % 2 or k.shape[1] % 2):
        return f"a mask with odd lengths {q.shape[1]}x{k.shape[1]}"
    return None


@functools.cache
def _warn_fallback(reason: str) -> None:
    logging.getLogger(__name__).warning("attention_impl='cudnn' does not apply (%s); using XLA's attention", reason)


def choose_implementation(q, k, mask, implementation: str | None) -> str:
    """The `jax.nn.dot_product_attention` implementation to use.

    None picks cuDNN's fused kernel wherever it applies and XLA's otherwise, so one config runs on a laptop's CPU
    and on a GPU. 'cudnn' asked for where it does not apply falls back to XLA with one warning (same outputs,
    the CPU tests check it) rather than failing at compile time; 'xla' is always XLA.
    """
    if implementation == "xla":
        return "xla"
    reason = fused_attention_applies(q, k, mask)
    if reason is None:
        return "cudnn"
    if implementation == "cudnn":
        _warn_fallback(reason)
    return "xla"


def fused_attention(q, k, v, mask, implementation: str = "cudnn"):
    """`jax.nn.dot_product_attention` with cuDNN's kernel; unmasked odd lengths are padded to even ones.

    The padded key is excluded through cuDNN's own key lengths (no bias), the padded query row is dropped, so the
    result equals attention over the unpadded operands. `implementation` is only ever 'xla' in the CPU tests
    that check that equality.
    """
    t, s = q.shape[1], k.shape[1]
    if mask is not None:
        # cuDNN takes a mask as a bias of the logits' own [.., T, S] shape; key-padding masks come as [B, 1, 1, S]
        mask = jnp.broadcast_to(mask, (*mask.shape[:2], t, s))
        return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)
    if not (t % 2 or s % 2):
        return jax.nn.dot_product_attention(q, k, v, implementation=implementation)

    def even(x):
        return jnp.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, 0), (0, 0)))

    b = q.shape[0]
    out = jax.nn.dot_product_attention(
        even(q),
        even(k),
        even(v),
        query_seq_lengths=jnp.full((b,), t, jnp.int32),
        key_value_seq_lengths=jnp.full((b,), s, jnp.int32),
        implementation=implementation,
    )
    return out[:, :t]


def attend(q, k, v, mask, dropout_rate: float = 0.0, deterministic: bool = True, implementation=None):
    """Scaled dot-product attention: q [B, Tq, H, K], k/v [B, Tk, H, K], mask [B|1, 1|H, Tq, Tk] -> [B, Tq, H, K].

    Goes through `jax.nn.dot_product_attention` (cuDNN's fused kernel on a GPU where it applies: see
    `choose_implementation`) except for attention-probability dropout while training, which needs the explicit
    probabilities. Call it inside a module's compact method when dropout is on (it creates an nn.Dropout).
    """
    if dropout_rate > 0.0 and not deterministic:
        logits = jnp.einsum("bqhd,bkhd->bhqk", q * q.shape[-1] ** -0.5, k).astype(jnp.float32)
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
        probs = nn.Dropout(dropout_rate)(probs, deterministic=False)
        return jnp.einsum("bhqk,bkhd->bqhd", probs, v)
    if choose_implementation(q, k, mask, implementation) == "cudnn":
        return fused_attention(q, k, v, mask)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


# Kernels are created in their final [embed, heads, kv] / [heads, kv, embed] shapes (xavier over the fused axes,
# the distribution DenseGeneral draws) instead of nn.DenseGeneral's flat-then-reshape: Flax re-runs a parameter's
# init abstractly on every apply to check shapes, and reshaping a logically-partitioned kernel under active
# sharding rules fails (flax 0.12).
class HeadProjection(nn.Module):
    """[..., D] -> [..., heads, head_dim]. Parameters: kernel [embed, heads, kv], bias [heads, kv]."""

    num_heads: int
    head_dim: int
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0, out_axis=(1, 2))
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(init, ("embed", "heads", "kv")),
            (x.shape[-1], self.num_heads, self.head_dim),
            self.param_dtype,
        )
        y = jnp.einsum("...d,dhk->...hk", x.astype(self.dtype), jnp.asarray(kernel, self.dtype))
        if self.use_bias:
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(nn.initializers.zeros, ("heads", "kv")),
                (self.num_heads, self.head_dim),
                self.param_dtype,
            )
            y = y + jnp.asarray(bias, self.dtype)
        return y


class OutputProjection(nn.Module):
    """[..., heads, head_dim] -> [..., features]. Parameters: kernel [heads, kv, embed], bias [embed]."""

    features: int
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1), out_axis=2)
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(init, ("heads", "kv", "embed")),
            (x.shape[-2], x.shape[-1], self.features),
            self.param_dtype,
        )
        y = jnp.einsum("...hk,hkd->...d", x.astype(self.dtype), jnp.asarray(kernel, self.dtype))
        if self.use_bias:
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                (self.features,),
                self.param_dtype,
            )
            y = y + jnp.asarray(bias, self.dtype)
        return y


class MultiHeadAttention(nn.Module):
    """Multi-head dot-product attention.

    Call: (inputs_q [B, Tq, D], inputs_kv [B, Tk, Dkv] or None for self-attention, mask [B|1, 1|H, Tq, Tk] bool)
    -> [B, Tq, D].

    Attention itself goes through `jax.nn.dot_product_attention`, so backends with a fused kernel (cuDNN flash
    attention on GPU for bf16/fp16) use it. The one exception is attention-probability dropout while training,
    which needs the explicit probabilities and takes the unfused path.
    """

    num_heads: int
    head_dim: int | None = None
    out_features: int | None = None
    use_bias: bool = True
    # False drops only the key bias (VideoMAE, BEiT, data2vec): it adds q.b_k, the same logit for every key of a
    # query, so softmax cancels it; those checkpoints store none, and a parameter nothing can train is left out.
    key_bias: bool = True
    dropout_rate: float = 0.0
    implementation: str | None = None  # forwarded to jax.nn.dot_product_attention ('xla', 'cudnn', None=auto)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs_q, inputs_kv=None, mask=None, *, deterministic: bool = True):
        inputs_kv = inputs_q if inputs_kv is None else inputs_kv
        features = inputs_q.shape[-1]
        if self.head_dim is None and features % self.num_heads:
            raise ValueError(f"width {features} is not divisible by num_heads {self.num_heads}")
        head_dim = self.head_dim or features // self.num_heads

        def proj(name, use_bias=self.use_bias):
            return HeadProjection(
                self.num_heads,
                head_dim,
                use_bias=use_bias,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=name,
            )

        q = proj("query")(inputs_q)
        k = proj("key", self.use_bias and self.key_bias)(inputs_kv)
        v = proj("value")(inputs_kv)
        q = nn.with_logical_constraint(q, ("batch", "length", "heads", "kv"))
        k = nn.with_logical_constraint(k, ("batch", "length", "heads", "kv"))
        v = nn.with_logical_constraint(v, ("batch", "length", "heads", "kv"))

        out = attend(q, k, v, mask, self.dropout_rate, deterministic, self.implementation)
        out = nn.with_logical_constraint(out, ("batch", "length", "heads", "kv"))
        return OutputProjection(
            self.out_features or features,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="out",
        )(out)
