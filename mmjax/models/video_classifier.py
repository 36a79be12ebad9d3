"""A video tower and one linear layer: the shape of VideoMAE's (and ViViT's) video classification models.

Parameter names (stable): `tower` (e.g. encoders.VideoViT), `head` (Dense kernel [embed, classes], bias).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax.layers import dense

Dtype = jnp.dtype | type


class VideoClassifier(nn.Module):
    """Videos [B, T, H, W, C] -> dict(logits [B, num_classes], pooled_output [B, D], last_hidden_state [B, N, D]).

    The head reads the tower's pooled vector, so the tower's pooling and final norm decide what it sees (VideoMAE:
    mean of the tokens, then fc_norm = VideoViT(pooling='gap', final_norm='pooled')).
    """

    tower: nn.Module
    num_classes: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, videos, *, train: bool = False) -> dict:
        encoded = self.tower(videos, train=train)
        head = dense(self.num_classes, ("embed", "vocab"), dtype=self.dtype, param_dtype=self.param_dtype, name="head")
        return {
            "logits": head(encoded.pooled),
            "pooled_output": encoded.pooled,
            "last_hidden_state": encoded.tokens,
        }
