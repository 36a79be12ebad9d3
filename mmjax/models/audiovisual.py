"""A video tower and an audio tower in one embedding space: audio-visual correspondence (does this soundtrack
belong to this clip?), trained contrastively against other clips' soundtracks and the clip's own, shifted in time.

Parameter names (stable): `video_tower`, `audio_tower`, `video_projection`, `audio_projection` (kernel
[tower width, embed_dim]), `logit_scale` (a scalar, log of the temperature's inverse).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.layers import dense
from mmjax.models.clip import l2_normalize

Dtype = jnp.dtype | type


def time_shifted(waveforms: jax.Array, shift: int) -> jax.Array:
    """Waveforms [B, S] rolled by `shift` samples: the same sounds, no longer where the frames show their causes
    (the time-shifted negatives of correspondence)."""
    return jnp.roll(waveforms, shift, axis=-1)


class AudioVisual(nn.Module):
    """clip [B, T, H, W, C], waveforms [B, S] (+ lengths [B]) -> L2-normalized embeddings [B, embed_dim] each.

    video_tower: any video tower (a clip in, an Encoded out); audio_tower: an audio tower with a `frontend` (it
    takes waveforms). `similarity(video, audio)` gives scale * cosine [B_v, B_a], the one place scores are formed.
    """

    video_tower: nn.Module
    audio_tower: nn.Module
    embed_dim: int = 128
    logit_scale_init: float = math.log(10.0)
    max_logit_scale: float = 100.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.video_projection = dense(self.embed_dim, ("embed", "mlp"), name="video_projection", **kw)
        self.audio_projection = dense(self.embed_dim, ("embed", "mlp"), name="audio_projection", **kw)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(self.logit_scale_init), ())

    def encode_video(self, clip, *, train: bool = False) -> jax.Array:
        return l2_normalize(self.video_projection(self.video_tower(clip, train=train).pooled).astype(jnp.float32))

    def encode_audio(self, waveforms, lengths=None, *, train: bool = False) -> jax.Array:
        pooled = self.audio_tower(waveforms, lengths, train=train).pooled
        return l2_normalize(self.audio_projection(pooled).astype(jnp.float32))

    def scale(self) -> jax.Array:
        return jnp.minimum(jnp.exp(self.logit_scale), self.max_logit_scale)

    def similarity(self, video_embeds, audio_embeds) -> jax.Array:
        """[B_v, E], [B_a, E] -> scale * cosine [B_v, B_a]."""
        return self.scale() * video_embeds @ audio_embeds.T

    def __call__(self, clip, waveforms, lengths=None, *, train: bool = False) -> dict:
        """-> {video_embeds [B, E], audio_embeds [B, E], logit_scale (clamped exp)}."""
        return {
            "video_embeds": self.encode_video(clip, train=train),
            "audio_embeds": self.encode_audio(waveforms, lengths, train=train),
            "logit_scale": self.scale(),
        }
