"""Audio-visual correspondence: does this soundtrack belong to this clip?

Batches hold a clip (`image`, from model.image, a video tower) and its soundtrack (`audio` + `audio_length`, to
model.audio, an audio tower with a frontend). Each clip is contrasted with every soundtrack of the batch and with
its own soundtrack rolled by `model.shift` of its length (the same sounds, no longer in time with the motion that
makes them): clip i's row of scores is [its similarity to soundtrack j for every j; to its own shifted one], its
target j = i (cross-entropy); each soundtrack's row over the batch's clips is the other direction. Other clips
teach which sounds go with which objects; the shifted ones, when they go with them.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.config.errors import ConfigError
from mmjax.config.schema import Named
from mmjax.models import AudioVisual, time_shifted
from mmjax.train.tasks.base import IMAGE_TOWER, Task, tower_from_config


class CorrespondenceTask(Task):
    MODEL_KEYS = {
        "image": IMAGE_TOWER,
        "audio": Named("tower", None, "the audio tower (with a frontend: it takes the waveforms)"),
        "embed_dim": (128, "width of the shared clip-soundtrack embedding space"),
        "shift": (0.5, "the time-shifted negative: the soundtrack rolled by this fraction of its length"),
        "logit_scale_init": (2.302585, "initial log inverse temperature (log 10)"),
    }
    DATA_TASK = "image_text"
    DEFAULT_EVALS = {"correspondence": {"type": "correspondence"}}

    @classmethod
    def validate_config(cls, config) -> None:
        if config.model.audio is None:
            raise ConfigError("config key 'model.audio' is required by task 'correspondence' (e.g. {'name': 'ast'})")
        if not (config.data.num_frames and config.data.audio_samples):
            raise ConfigError(
                "config keys 'data.num_frames' and 'data.audio_samples' must both be set with task 'correspondence': "
                "batches hold a clip and its soundtrack"
            )
        if not 0 < config.model.shift < 1:
            raise ConfigError(f"config key 'model.shift' must be in (0, 1), got {config.model.shift}")

    def build_model(self, cfg) -> nn.Module:
        return AudioVisual(
            video_tower=tower_from_config(cfg.image, self.dtype),
            audio_tower=tower_from_config(cfg.audio, self.dtype),
            embed_dim=cfg.embed_dim,
            logit_scale_init=cfg.logit_scale_init,
            dtype=self.dtype,
        )

    def shifted(self, batch):
        waves, lengths = self.audio(batch)
        return time_shifted(waves, int(self.config.model.shift * waves.shape[-1])), lengths

    def embeddings(self, params, batch, *, train: bool = False, rng=None) -> dict:
        """-> {video, audio, shifted}: normalized embeddings [B, E] of the clips, soundtracks and shifted ones."""
        rngs = {"dropout": rng} if rng is not None else {}
        apply = lambda *a, **kw: self.model.apply({"params": params}, *a, **kw, train=train, rngs=rngs)  # noqa: E731
        return {
            "video": apply(self.media(batch), method="encode_video"),
            "audio": apply(*self.audio(batch), method="encode_audio"),
            "shifted": apply(*self.shifted(batch), method="encode_audio"),
        }

    def init(self, rng, batch):
        return self.model.init(rng, self.media(batch), *self.audio(batch))["params"]

    def loss(self, params, batch, rng):
        e = self.embeddings(params, batch, train=True, rng=rng)
        sim = lambda v, a: self.model.apply({"params": params}, v, a, method="similarity")  # noqa: E731
        other = sim(e["video"], e["audio"])  # [B, B]
        own_shifted = jnp.diagonal(sim(e["video"], e["shifted"]))[:, None]  # [B, 1]
        positive = jnp.diagonal(other)
        loss_v2a = jnp.mean(jax.nn.logsumexp(jnp.concatenate([other, own_shifted], 1), axis=1) - positive)
        loss_a2v = jnp.mean(jax.nn.logsumexp(other, axis=0) - positive)
        targets = jnp.arange(other.shape[0])
        metrics = {
            "loss_v2a": loss_v2a,
            "loss_a2v": loss_a2v,
            "v2a_accuracy": jnp.mean(jnp.argmax(other, axis=1) == targets),
            "shift_accuracy": jnp.mean(positive > own_shifted[:, 0]),
        }
        return 0.5 * (loss_v2a + loss_a2v), metrics

    def predict_correspondence(self, params, batch) -> dict:
        """Per-example embeddings {video, audio, shifted} [B, E]: the evaluator compares them over the split."""
        return self.embeddings(params, batch)
