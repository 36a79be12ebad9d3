"""A small spectrogram CNN (VGGish/PANNs-style): the audio baseline the transformers are measured against.

Spectrograms [B, T, F] are read as one-channel images (time x frequency). Each stage is two 3x3 convolutions with
GroupNorm and ReLU, then 2x2 average pooling: time and frequency shrink together, so a 1 s clip of 100 frames
leaves a dozen time steps after three stages. GroupNorm rather than BatchNorm for the reason the image ResNet
gives: no batch statistics, so results do not depend on how the batch is split over devices.

Parameter names (stable): `conv_{i}_{j}` (stage i, conv j: kernel [3, 3, in, out], logical axes (conv_h, conv_w,
conv_in, conv_out)), `norm_{i}_{j}` (GroupNorm scale and bias [out], axis `norm`), `proj` (Dense: channels x
remaining frequency bins -> width).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax.encoders.audio_frontend import tower_spectrograms
from mmjax.layers import Encoded

Dtype = jnp.dtype | type


class SpectrogramCNN(nn.Module):
    """Spectrograms [B, T, mel_bins] (or waveforms with `frontend`) -> Encoded(tokens [B, T', D], mask, pooled).

    channels:  output channels of each stage (one 2x2 pooling per stage: T' = T // 2**len(channels)).
    width:     D, each time step's token after flattening the remaining frequency bins with the channels.
    frontend:  None (input: spectrograms) or a preset of `audio_frontend.PRESETS`: the input is then waveforms
               [B, S] (optionally with lengths [B]) and the spectrogram has as many frames as the audio gives.
    groups:    GroupNorm groups (each stage's channels must divide by it).
    pooled is the tokens' mean over time.
    """

    channels: tuple[int, ...] = (32, 64, 128)
    width: int = 256
    num_mel_bins: int = 64
    groups: int = 8
    frontend: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, spectrograms, lengths=None, *, train: bool = False) -> Encoded:
        del train  # no dropout or batch statistics
        spectrograms = tower_spectrograms(spectrograms, lengths, self.frontend, self.num_mel_bins, num_frames=None)
        if spectrograms.ndim != 3 or spectrograms.shape[-1] != self.num_mel_bins:
            raise ValueError(
                f"SpectrogramCNN expects spectrograms [B, frames, {self.num_mel_bins}], got {tuple(spectrograms.shape)}"
            )
        shrink = 2 ** len(self.channels)
        if spectrograms.shape[1] < shrink or self.num_mel_bins < shrink:
            raise ValueError(
                f"SpectrogramCNN: {spectrograms.shape[1]} frames x {self.num_mel_bins} mel bins cannot be pooled "
                f"{len(self.channels)} times (needs at least {shrink} of each)"
            )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = spectrograms.astype(self.dtype)[..., None]  # [B, T, F, 1]
        for i, channels in enumerate(self.channels):
            if channels % self.groups:
                raise ValueError(f"SpectrogramCNN: stage {i} has {channels} channels, not divisible by {self.groups}")
            for j in range(2):
                x = nn.Conv(
                    channels,
                    (3, 3),
                    padding="SAME",
                    use_bias=False,  # the norm's bias follows
                    kernel_init=nn.with_logical_partitioning(
                        nn.initializers.he_normal(), ("conv_h", "conv_w", "conv_in", "conv_out")
                    ),
                    name=f"conv_{i}_{j}",
                    **kw,
                )(x)
                x = nn.GroupNorm(
                    self.groups,
                    scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
                    name=f"norm_{i}_{j}",
                    **kw,
                )(x)
                x = nn.relu(x)
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        b, t, f, c = x.shape
        tokens = nn.Dense(
            self.width,
            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("mlp", "embed")),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            name="proj",
            **kw,
        )(x.reshape(b, t, f * c))
        tokens = nn.relu(tokens)
        return Encoded(tokens=tokens, mask=jnp.ones((b, t), bool), pooled=jnp.mean(tokens, axis=1))
