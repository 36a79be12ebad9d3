"""A video as a sequence of images: an image ViT on every frame (one batched call), then a temporal model.

CLIP4Clip's recipe: `FrameViT` has a ViT's parameters under a ViT's names (so an image checkpoint, e.g. the demo's
CLIP image tower, loads into it as is) plus a small temporal transformer over the frames' pooled vectors. With
`temporal_depth=0` the frames are mean-pooled: a model that cannot see frame order, the control for the ones that
can. `tokens="patches"` hands on every frame's patch tokens instead of one vector a frame, for a fusion that
attends to a place in a frame (which of two shapes makes the sound).
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
    tokens:         'frames' (the T frame vectors above) or 'patches': every frame's patch tokens from the image
                    ViT, [B, T * P, D] frame by frame in row-major order (the ViT's prefix tokens dropped); the
                    pooled vector stays the frames' (through the temporal model). 'patches' needs temporal_depth 0:
                    the tokens carry no time position, so only the order they come in tells frames apart.
    Every other field is the image ViT's, applied to each frame alone.
    """

    num_frames: int = 8
    temporal_depth: int = 1
    tokens: str = "frames"

    @nn.compact
    def __call__(self, videos, *, train: bool = False) -> Encoded:
        if videos.ndim != 5:
            raise ValueError(f"FrameViT expects videos [B, T, H, W, C], got shape {tuple(videos.shape)}")
        b, t = videos.shape[:2]
        if t != self.num_frames:
            raise ValueError(f"FrameViT was built for {self.num_frames} frames, got {t} (video shape {videos.shape})")
        if self.tokens not in ("frames", "patches"):
            raise ValueError(f"FrameViT tokens must be 'frames' or 'patches', got {self.tokens!r}")
        if self.tokens == "patches" and self.temporal_depth:
            raise ValueError(f"FrameViT tokens='patches' takes temporal_depth 0, got {self.temporal_depth}")
        frames = super().__call__(videos.reshape(b * t, *videos.shape[2:]), train=train)
        x = frames.pooled.reshape(b, t, -1)
        if self.tokens == "patches":
            patches = frames.tokens[:, 1 if self.pooling == "tok" else 0 :].reshape(b, -1, frames.tokens.shape[-1])
            return Encoded(tokens=patches, mask=jnp.ones(patches.shape[:2], bool), pooled=x.mean(axis=1))
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
