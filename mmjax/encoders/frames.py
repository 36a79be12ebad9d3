"""A video as a sequence of images: an image ViT on every frame (one batched call), then a temporal model.

CLIP4Clip's recipe: `FrameViT` has a ViT's parameters under a ViT's names (so an image checkpoint, e.g. the demo's
CLIP image tower, loads into it as is) plus a small temporal transformer over the frames' pooled vectors. With
`temporal_depth=0` the frames are mean-pooled: a model that cannot see frame order, the control for the ones that
can.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax.encoders.vit import ViT
from mmjax.layers import Encoded
from mmjax.layers.transformer import encoder_like, layer_norm


class FrameViT(ViT):
    """Videos [B, T, H, W, C] (normalized) -> Encoded(tokens [B, T, D] per-frame vectors, mask, pooled [B, D]).

    num_frames:     T, the clip length the temporal position table is made for (other lengths are an error).
    temporal_depth: transformer layers over the T frame vectors (with learned temporal positions); 0: the
                    frames' mean, blind to their order.
    Every other field is the image ViT's, applied to each frame alone.
    """

    num_frames: int = 8
    temporal_depth: int = 1

    @nn.compact
    def __call__(self, videos, *, train: bool = False) -> Encoded:
        if videos.ndim != 5:
            raise ValueError(f"FrameViT expects videos [B, T, H, W, C], got shape {tuple(videos.shape)}")
        b, t = videos.shape[:2]
        if t != self.num_frames:
            raise ValueError(f"FrameViT was built for {self.num_frames} frames, got {t} (video shape {videos.shape})")
        frames = super().__call__(videos.reshape(b * t, *videos.shape[2:]), train=train)
        x = frames.pooled.reshape(b, t, -1)
        if self.temporal_depth:
            kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
            table = self.param(
                "temporal_pos_embedding",
                nn.with_logical_partitioning(nn.initializers.normal(0.02), ("length", "embed")),
                (self.num_frames, x.shape[-1]),
                self.param_dtype,
            )
            x = x + jnp.asarray(table, self.dtype)[None]
            x = encoder_like(self, num_layers=self.temporal_depth, name="temporal")(x, None, not train)
            x = layer_norm(self.layer_norm_eps, name="temporal_norm", **kw)(x)
        return Encoded(tokens=x, mask=jnp.ones((b, t), bool), pooled=x.mean(axis=1))
