"""What the token-level fusions (early, mid, bottleneck) share: fields, input projection, stacks, output pooling.

Shared parameter names: `proj_{m}` (kernel [D_m, width]) for each modality m whose token width differs from
`width`; `type_embed` (TypeEmbed, one row per modality in `modality_order`); `pool_fusion` (LateFusion, only
with pool='modality').

Every token-level fusion returns tokens with padded positions set to zero, so a padded input token cannot reach
any output, not even the output at its own position.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.fusion.late import LateFusion, modality_order
from mmjax.layers import Block, Encoded, Encoder, TypeEmbed, dense, layer_norm, masked_mean, padding_mask

Dtype = jnp.dtype | type

POOLS = ("mean", "modality")


class TokenFusion(nn.Module):
    """Fields shared by EarlyFusion, MidFusion and BottleneckFusion (a base class for fields, not for behaviour).

    width:      the joint token width; None takes the modalities' common token width (they must agree).
    num_layers: transformer layers in the fusion module (per-modality and joint layers together).
    pool:       'mean' = masked mean over every real token of every modality; 'modality' = masked mean per
                modality, the M vectors then combined by a LateFusion (`pool_fusion`, with `combine`), as MBT
                classifies from each modality's summary.
    modalities: explicit processing order; None = sorted keys of the input dict.
    remat/scan: forwarded to the layers.Encoder stacks (not to interleaved per-layer blocks).
    """

    width: int | None = None
    num_layers: int = 2
    num_heads: int = 4
    mlp_dim: int | None = None
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    pool: str = "mean"
    combine: str = "sum"
    modalities: tuple[str, ...] | None = None
    remat: bool = False
    scan: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def block_kwargs(self, width: int) -> dict:
        return dict(
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim or 4 * width,
            activation=self.activation,
            pre_norm=True,
            layer_norm_eps=self.layer_norm_eps,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            attention_impl=self.attention_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    def prepare(self, encodings: Mapping[str, Encoded]) -> tuple[tuple[str, ...], dict, dict, int]:
        """-> (ordered names, {m: tokens [B, T_m, width]}, {m: mask [B, T_m] bool}, width)."""
        if self.pool not in POOLS:
            raise ValueError(f"unknown fusion pool {self.pool!r}; expected one of {POOLS}")
        names = modality_order(encodings, self.modalities)
        widths = {m: encodings[m].tokens.shape[-1] for m in names}
        width = self.width
        if width is None:
            if len(set(widths.values())) > 1:
                raise ValueError(f"modalities have different token widths {widths}; set the fusion's `width`")
            width = widths[names[0]]
        tokens, masks = {}, {}
        for m in names:
            x = jnp.asarray(encodings[m].tokens, self.dtype)
            if widths[m] != width:
                x = dense(width, ("embed", "mlp"), name=f"proj_{m}", dtype=self.dtype, param_dtype=self.param_dtype)(x)
            tokens[m] = nn.with_logical_constraint(x, ("batch", "length", "embed"))
            masks[m] = encodings[m].mask.astype(bool)
        return names, tokens, masks, width

    def stack(self, num_layers: int, width: int, name: str) -> Encoder:
        return Encoder(num_layers, remat=self.remat, scan=self.scan, name=name, **self.block_kwargs(width))

    def block(self, width: int, name: str) -> Block:
        cls = nn.remat(Block, static_argnums=(3,)) if self.remat else Block
        return cls(name=name, **self.block_kwargs(width))

    def final_norm(self, name: str):
        return layer_norm(self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

    def join(self, names, tokens: dict, masks: dict, width: int) -> tuple[jax.Array, jax.Array]:
        """Concatenate in `names` order and add the modality-type embedding: -> x [B, T, width], mask [B, T]."""
        x = jnp.concatenate([tokens[m] for m in names], axis=1)
        mask = jnp.concatenate([masks[m] for m in names], axis=1)
        type_ids = jnp.concatenate([jnp.full((tokens[m].shape[1],), i, jnp.int32) for i, m in enumerate(names)])
        table = TypeEmbed(len(names), width, name="type_embed", dtype=self.dtype, param_dtype=self.param_dtype)
        return x + table(type_ids)[None], mask

    def output(self, names, tokens: dict, masks: dict, *, train: bool) -> Encoded:
        """Per-modality final tokens -> the fused Encoded (padded positions zeroed, pooled by `self.pool`)."""
        x = jnp.concatenate([tokens[m] for m in names], axis=1)
        mask = jnp.concatenate([masks[m] for m in names], axis=1)
        x = jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))
        if self.pool == "mean":
            pooled = masked_mean(x, mask)
        else:
            per_modality = {
                m: Encoded(tokens=tokens[m], mask=masks[m], pooled=masked_mean(tokens[m], masks[m])) for m in names
            }
            pooled = LateFusion(
                self.combine,
                modalities=names,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="pool_fusion",
            )(per_modality, train=train).pooled
        return Encoded(tokens=nn.with_logical_constraint(x, ("batch", "length", "embed")), mask=mask, pooled=pooled)


def split(x: jax.Array, names, lengths: dict) -> dict:
    """[B, sum T_m, ...] -> {m: [B, T_m, ...]} in `names` order (the inverse of concatenation along axis 1)."""
    out, start = {}, 0
    for m in names:
        out[m] = x[:, start : start + lengths[m]]
        start += lengths[m]
    return out


def self_mask(mask: jax.Array) -> jax.Array:
    """[B, T] validity -> [B, 1, 1, T] key mask for self-attention."""
    return padding_mask(mask)
