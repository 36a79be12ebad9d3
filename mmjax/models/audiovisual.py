"""A video tower and an audio tower in one embedding space.

`AudioVisual`: audio-visual correspondence (does this soundtrack belong to this clip?), trained contrastively
against other clips' soundtracks and the clip's own, shifted in time. Parameter names (stable): `video_tower`,
`audio_tower`, `video_projection`, `audio_projection` (kernel [tower width, embed_dim]), `logit_scale` (a scalar,
log of the temperature's inverse).
`SoundLocalizer`: sound localization, a heatmap over a frame's patches from the soundtrack's embedding.
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


class SoundLocalizer(nn.Module):
    """Where in a frame is the sound? frames [N, H, W, C] and waveforms [N, S] -> the cosine of the soundtrack's
    embedding to each of the frame's patch embeddings: a heatmap [N, gh, gw] (Senocak et al. 2018; LVS, Chen et
    al. 2021), learned without boxes from `clip_scores` (the max over patches: a clip scores a soundtrack by its
    best-matching place).

    frame_tower: an image tower whose tokens are its patches in row-major order, after `prefix` leading tokens
    (ViT: the class token); audio_tower: an audio tower with a frontend.
    Parameter names (stable): `frame_tower`, `audio_tower`, `patch_projection`, `audio_projection`, `logit_scale`.
    """

    frame_tower: nn.Module
    audio_tower: nn.Module
    grid: tuple[int, int]  # (gh, gw) patches of a frame
    prefix: int = 1
    embed_dim: int = 128
    logit_scale_init: float = math.log(10.0)
    max_logit_scale: float = 100.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.patch_projection = dense(self.embed_dim, ("embed", "mlp"), name="patch_projection", **kw)
        self.audio_projection = dense(self.embed_dim, ("embed", "mlp"), name="audio_projection", **kw)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(self.logit_scale_init), ())

    def encode_patches(self, frames, *, train: bool = False) -> jax.Array:
        """frames [N, H, W, C] -> L2-normalized patch embeddings [N, gh * gw, E]."""
        tokens = self.frame_tower(frames, train=train).tokens[:, self.prefix :]
        return l2_normalize(self.patch_projection(tokens).astype(jnp.float32))

    def encode_audio(self, waveforms, lengths=None, *, train: bool = False) -> jax.Array:
        pooled = self.audio_tower(waveforms, lengths, train=train).pooled
        return l2_normalize(self.audio_projection(pooled).astype(jnp.float32))

    def scale(self) -> jax.Array:
        return jnp.minimum(jnp.exp(self.logit_scale), self.max_logit_scale)

    def heatmap(self, patches, audio) -> jax.Array:
        """patches [N, P, E], audio [N, E] (pairwise) -> cosine [N, gh, gw]."""
        return jnp.einsum("npe,ne->np", patches, audio).reshape(-1, *self.grid)

    def clip_scores(self, patches, audio) -> jax.Array:
        """patches [B, T, P, E] of every clip's frames, audio [B', E] -> scale * [B, B']: each clip's score for each
        soundtrack, the max over a frame's patches averaged over its frames."""
        cos = jnp.einsum("btpe,ke->btpk", patches, audio)
        return self.scale() * cos.max(axis=2).mean(axis=1)

    def __call__(self, frames, waveforms, lengths=None, *, train: bool = False) -> jax.Array:
        """Pairwise frames [N, H, W, C] and waveforms [N, S] -> heatmaps [N, gh, gw]."""
        patches = self.encode_patches(frames, train=train)
        return self.heatmap(patches, self.encode_audio(waveforms, lengths, train=train)) * self.scale()
