"""Mid fusion (MBT's "vanilla" fusion, and ViLBERT's co-attention): per-modality layers first, joint layers after.

Parameter names (stable):
  `proj_{m}`     input projection, only for modalities whose token width differs from `width`;
  `encoder_{m}`  layers.Encoder with the first `fusion_layer` layers of modality m (absent when fusion_layer=0);
  joint='concat':      `type_embed` and `joint` (layers.Encoder with num_layers - fusion_layer layers), `ln_final`;
  joint='coattention': `coattn_{i}` (CoAttentionBlock) for each layer after fusion_layer, `ln_final_{m}`;
  no joint layer (fusion_layer == num_layers): `ln_final_{m}`;
  `pool_fusion`  (LateFusion) with pool='modality'.
fusion_layer=0 gives EarlyFusion's tree; fusion_layer=num_layers gives per-modality encoders (`encoder_{m}`,
`ln_final_{m}`) followed by late fusion (`pool_fusion`), so weights copy one-to-one in both limits.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.fusion.common import TokenFusion, self_mask, split
from mmjax.layers import Block, Encoded, MultiHeadAttention, layer_norm, padding_mask

Dtype = jnp.dtype | type

JOINTS = ("concat", "coattention")


class CoAttentionBlock(nn.Module):
    """One ViLBERT co-attention layer over two or more token streams.

    Call: ({m: [B, T_m, D]}, {m: [B, T_m] bool}) -> {m: [B, T_m, D]}. Every stream first cross-attends (queries
    from itself, keys/values from the other streams concatenated, their padding masked), then runs its own
    self-attention + MLP Block. All streams update from the same pre-layer states.

    Parameter names: `ln_q_{m}`, `ln_kv_{m}` (pre-LN of queries and of the context), `cross_{m}`
    (MultiHeadAttention), `block_{m}` (layers.Block, pre-LN).
    """

    modalities: tuple[str, ...]
    num_heads: int
    mlp_dim: int
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, streams: Mapping[str, jax.Array], masks: Mapping[str, jax.Array], *, deterministic=True):
        if len(self.modalities) < 2:
            raise ValueError(f"co-attention needs at least two streams, got {self.modalities}")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        out = {}
        for m in self.modalities:
            others = [o for o in self.modalities if o != m]
            context = jnp.concatenate([streams[o] for o in others], axis=1)
            context_mask = jnp.concatenate([masks[o] for o in others], axis=1)
            q = layer_norm(self.layer_norm_eps, name=f"ln_q_{m}", **kw)(streams[m])
            kv = layer_norm(self.layer_norm_eps, name=f"ln_kv_{m}", **kw)(context)
            attn = MultiHeadAttention(
                self.num_heads,
                dropout_rate=self.attention_dropout_rate,
                implementation=self.attention_impl,
                name=f"cross_{m}",
                **kw,
            )(q, kv, mask=padding_mask(context_mask), deterministic=deterministic)
            x = streams[m] + nn.Dropout(self.dropout_rate)(attn, deterministic=deterministic)
            out[m] = Block(
                self.num_heads,
                self.mlp_dim,
                self.activation,
                pre_norm=True,
                layer_norm_eps=self.layer_norm_eps,
                dropout_rate=self.dropout_rate,
                attention_dropout_rate=self.attention_dropout_rate,
                attention_impl=self.attention_impl,
                name=f"block_{m}",
                **kw,
            )(x, self_mask(masks[m]), deterministic)
        return out


class MidFusion(TokenFusion):
    """dict[str, Encoded] -> Encoded(tokens [B, sum T_m, width], mask, pooled).

    Layers [0, fusion_layer) run per modality (own weights, own tokens only); layers [fusion_layer, num_layers)
    are joint: joint='concat' concatenates the streams (with modality-type embeddings) through shared blocks, as
    in MBT; joint='coattention' keeps the streams and exchanges information with CoAttentionBlocks, as in ViLBERT.
    """

    fusion_layer: int = 1
    joint: str = "concat"

    @nn.compact
    def __call__(self, encodings: Mapping[str, Encoded], *, train: bool = False) -> Encoded:
        if not 0 <= self.fusion_layer <= self.num_layers:
            raise ValueError(f"fusion_layer must be in [0, num_layers={self.num_layers}], got {self.fusion_layer}")
        if self.joint not in JOINTS:
            raise ValueError(f"unknown mid-fusion joint {self.joint!r}; expected one of {JOINTS}")
        names, tokens, masks, width = self.prepare(encodings)
        if self.fusion_layer > 0:
            for m in names:
                tokens[m] = self.stack(self.fusion_layer, width, f"encoder_{m}")(
                    tokens[m], self_mask(masks[m]), not train
                )
        num_joint = self.num_layers - self.fusion_layer
        if num_joint and self.joint == "concat":
            x, mask = self.join(names, tokens, masks, width)
            x = self.stack(num_joint, width, "joint")(x, self_mask(mask), not train)
            x = self.final_norm("ln_final")(x)
            return self.output(names, split(x, names, {m: tokens[m].shape[1] for m in names}), masks, train=train)
        kw = self.block_kwargs(width)
        kw.pop("pre_norm")
        for i in range(num_joint):
            tokens = CoAttentionBlock(names, name=f"coattn_{i}", **kw)(tokens, masks, deterministic=not train)
        tokens = {m: self.final_norm(f"ln_final_{m}")(tokens[m]) for m in names}
        return self.output(names, tokens, masks, train=train)
