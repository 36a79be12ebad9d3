"""Transformer pieces: Mlp, Block (pre-LN and post-LN), and Encoder (a stack with remat and scan options).

Parameter names (stable; converters depend on them):
  Mlp:     fc1 (kernel [embed, mlp]), fc2 (kernel [mlp, embed])
  Block:   ln_1, attn (MultiHeadAttention), ln_2, mlp (Mlp). In post-LN form ln_1 follows the attention residual
           and ln_2 the MLP residual (BERT); in pre-LN form they precede them (ViT, CLIP).
  Encoder: layer_0 ... layer_{n-1}, or `layers` with a leading [num_layers] axis when scan=True.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.layers.attention import MultiHeadAttention

Dtype = jnp.dtype | type


def quick_gelu(x):
    """CLIP's sigmoid approximation of gelu."""
    return x * jax.nn.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable] = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),  # erf form, as in BERT and HF "gelu"
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),  # HF "gelu_new" / "gelu_pytorch_tanh"
    "quick_gelu": quick_gelu,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


def get_activation(name: str) -> Callable:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def layer_norm(eps: float, dtype, param_dtype, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=eps,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
        name=name,
    )


def dense(features, axes, *, dtype, param_dtype, use_bias=True, kernel_init=None, name=None) -> nn.Dense:
    """A Dense whose kernel and bias carry logical axis names `axes` = (in_axis, out_axis)."""
    kernel_init = kernel_init or nn.initializers.xavier_uniform()
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=nn.with_logical_partitioning(kernel_init, axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[1],)),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


class Mlp(nn.Module):
    """[..., D] -> [..., out_dim or D] through one hidden layer of width mlp_dim."""

    mlp_dim: int
    activation: str = "gelu"
    dropout_rate: float = 0.0
    out_dim: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, deterministic: bool = True):
        out_dim = self.out_dim or x.shape[-1]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = dense(self.mlp_dim, ("embed", "mlp"), name="fc1", **kw)(x)
        h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
        h = get_activation(self.activation)(h)
        h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return dense(out_dim, ("mlp", "embed"), name="fc2", **kw)(h)


class Block(nn.Module):
    """One transformer layer: [B, T, D], attention mask [B|1, 1, T, T] -> [B, T, D]."""

    num_heads: int
    mlp_dim: int
    activation: str = "gelu"
    pre_norm: bool = True
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    key_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask=None, deterministic: bool = True):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn = MultiHeadAttention(
            self.num_heads,
            dropout_rate=self.attention_dropout_rate,
            implementation=self.attention_impl,
            key_bias=self.key_bias,
            name="attn",
            **kw,
        )
        mlp = Mlp(self.mlp_dim, self.activation, self.dropout_rate, name="mlp", **kw)
        ln_1 = layer_norm(self.layer_norm_eps, name="ln_1", **kw)
        ln_2 = layer_norm(self.layer_norm_eps, name="ln_2", **kw)
        drop = nn.Dropout(self.dropout_rate)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        if self.pre_norm:
            x = x + drop(attn(ln_1(x), mask=mask, deterministic=deterministic), deterministic=deterministic)
            x = x + drop(mlp(ln_2(x), deterministic=deterministic), deterministic=deterministic)
        else:
            x = ln_1(x + drop(attn(x, mask=mask, deterministic=deterministic), deterministic=deterministic))
            x = ln_2(x + drop(mlp(x, deterministic=deterministic), deterministic=deterministic))
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class _ScanBlock(Block):
    """Block with the (carry, _) -> (carry, None) signature nn.scan wants."""

    @nn.compact
    def __call__(self, x, mask=None, deterministic: bool = True):
        return super().__call__(x, mask, deterministic), None


class Encoder(nn.Module):
    """A stack of `num_layers` Blocks: [B, T, D] -> [B, T, D].

    remat: recompute each block's activations in the backward pass (memory for compute).
    scan:  run the layers with nn.scan so the block is traced and compiled once instead of num_layers times;
           compile time on pods grows with depth otherwise. Parameters then live under `layers` with a leading
           [num_layers] axis (logical name `layers`).
    """

    num_layers: int
    num_heads: int
    mlp_dim: int
    activation: str = "gelu"
    pre_norm: bool = True
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    key_bias: bool = True
    remat: bool = False
    scan: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _block_kwargs(self):
        return dict(
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            activation=self.activation,
            pre_norm=self.pre_norm,
            layer_norm_eps=self.layer_norm_eps,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            attention_impl=self.attention_impl,
            key_bias=self.key_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @nn.compact
    def __call__(self, x, mask=None, deterministic: bool = True):
        # the residual stream runs in the compute dtype; a float32 input would otherwise promote every layer
        x = x.astype(self.dtype)
        if self.scan:
            block_cls = _ScanBlock
            if self.remat:
                block_cls = nn.remat(block_cls, prevent_cse=False, static_argnums=(3,))
            stack = nn.scan(
                block_cls,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast),
                length=self.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(name="layers", **self._block_kwargs())
            x, _ = stack(x, mask, deterministic)
            return x
        block_cls = nn.remat(Block, static_argnums=(3,)) if self.remat else Block
        for i in range(self.num_layers):
            x = block_cls(name=f"layer_{i}", **self._block_kwargs())(x, mask, deterministic)
        return x


# Fields a tower shares with Encoder under the same names; `encoder_like` copies them.
_SHARED_FIELDS = (
    "num_heads",
    "activation",
    "layer_norm_eps",
    "dropout_rate",
    "attention_dropout_rate",
    "attention_impl",
    "key_bias",
    "remat",
    "scan",
    "dtype",
    "param_dtype",
)


def encoder_like(owner: nn.Module, **overrides) -> Encoder:
    """The Encoder of a tower with fields `depth`, `width`, `mlp_dim` (None = 4 x width) and the shared ones above."""
    kwargs = {f: getattr(owner, f) for f in _SHARED_FIELDS if hasattr(owner, f)}
    kwargs.update(num_layers=owner.depth, mlp_dim=owner.mlp_dim or 4 * owner.width)
    kwargs.update(overrides)
    return Encoder(**kwargs)
