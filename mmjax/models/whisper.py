"""WhisperEncoderModel: the Whisper encoder tower with Hugging Face's argument and output names."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax.encoders.audio import WhisperEncoder


class WhisperEncoderModel(nn.Module):
    """input_features [B, mel_bins, T] (Hugging Face's layout; encoders.WhisperEncoder takes [B, T, mel_bins])
    -> dict(last_hidden_state [B, ceil(T / 2), D], pooled [B, D]). Parameters under `encoder`."""

    encoder: WhisperEncoder

    def __call__(self, input_features, *, train: bool = False) -> dict:
        enc = self.encoder(jnp.swapaxes(input_features, 1, 2), train=train)
        return {"last_hidden_state": enc.tokens, "pooled": enc.pooled}
