"""Any towers + any fusion + a head: comparing fusion strategies is a config change.

Parameter names (stable): `towers_{m}` (the tower of modality m), `fusion`, `head`.

Input convention: `inputs` maps a modality name to what its tower takes:
  an array             -> tower(array, train=...)                     e.g. 'image': pixel_values [B, H, W, C]
  a tuple              -> tower(*tuple, train=...)                    e.g. 'text': (input_ids, attention_mask)
  a dict               -> tower(**dict, train=...)                    e.g. 'text': {'input_ids': ..., ...}
  an Encoded           -> used as is (precomputed or frozen features; the modality needs no tower).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.core import FrozenDict

from mmjax.layers import Encoded
from mmjax.models.heads import build_head

Dtype = jnp.dtype | type


class Classifier(nn.Module):
    """inputs {modality: tower input} -> dict(logits [B, num_classes], pooled_output [B, D'],
    last_hidden_state [B, T, D], attention_mask [B, T]) where the last three are the fusion's Encoded.

    towers:  {modality: module returning an Encoded} (e.g. encoders.ViT, encoders.Bert). A plain dict is frozen
             into a FrozenDict so the model stays hashable (usable as a static jit argument).
    fusion:  any module from mmjax.fusion (or anything mapping dict[str, Encoded] -> Encoded).
    head:    a name in models.heads.HEADS: 'classification' (softmax classes) or 'answer' (VQA soft scores).
    """

    towers: Mapping[str, nn.Module]
    fusion: nn.Module
    num_classes: int
    head: str = "classification"
    head_hidden_dim: int | None = None
    head_dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self):
        if not isinstance(self.towers, FrozenDict):
            object.__setattr__(self, "towers", FrozenDict(self.towers))
        super().__post_init__()

    def encode(self, inputs: Mapping[str, Any], *, train: bool = False) -> dict[str, Encoded]:
        """Run each modality's tower: -> {modality: Encoded}."""
        missing = sorted(set(self.towers) - set(inputs))
        if missing:
            raise ValueError(f"no inputs for modalities {missing}; got inputs for {sorted(inputs)}")
        out = {}
        for m, value in inputs.items():
            if isinstance(value, Encoded):
                out[m] = value
                continue
            if m not in self.towers:
                raise ValueError(f"modality {m!r} has no tower (towers: {sorted(self.towers)}); pass an Encoded")
            tower = self.towers[m]
            if isinstance(value, Mapping):
                out[m] = tower(**value, train=train)
            elif isinstance(value, tuple | list):
                out[m] = tower(*value, train=train)
            else:
                out[m] = tower(value, train=train)
        return out

    def fuse(self, inputs: Mapping[str, Any], *, train: bool = False) -> Encoded:
        """Towers then fusion: -> the fused Encoded."""
        return self.fusion(self.encode(inputs, train=train), train=train)

    @nn.compact
    def __call__(self, inputs: Mapping[str, Any], *, train: bool = False) -> dict:
        fused = self.fuse(inputs, train=train)
        head = build_head(
            self.head,
            self.num_classes,
            hidden_dim=self.head_hidden_dim,
            dropout_rate=self.head_dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="head",
        )
        return {
            "logits": head(fused.pooled, train=train),
            "pooled_output": fused.pooled,
            "last_hidden_state": fused.tokens,
            "attention_mask": fused.mask,
        }
