"""Audio-visual tasks on a clip and its soundtrack: correspondence and sound localization.

Batches hold a clip (`image`, from model.image, a video tower) and its soundtrack (`audio` + `audio_length`, to
model.audio, an audio tower with a frontend).

correspondence: does this soundtrack belong to this clip? Each clip is contrasted with every soundtrack of the
batch and with its own rolled by `model.shift` of its length (the same sounds, no longer in time with the motion
that makes them): clip i's row of scores is [its similarity to soundtrack j for every j; to its own shifted one],
its target j = i (cross-entropy); each soundtrack's row over the batch's clips is the other direction. Other clips
teach which sounds go with which objects; the shifted ones, when they go with them.

localization: where is the sound? model.image is a `frame_vit` whose image ViT (without the temporal model) gives
each frame's patch tokens; a clip scores a soundtrack by the max over a frame's patches of their cosine to it,
averaged over its frames, trained with the symmetric contrastive loss over the batch (no box is used). The
heatmap of a frame is the cosine per patch; the evaluator plays the pointing game with its maximum.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import eval as mmeval
from mmjax import losses
from mmjax.config.errors import ConfigError
from mmjax.config.schema import Named
from mmjax.encoders import build_tower
from mmjax.models import AudioVisual, SoundLocalizer, time_shifted
from mmjax.train.tasks.base import IMAGE_TOWER, Task, tower_from_config

AUDIO_TOWER = Named("tower", None, "the audio tower (with a frontend: it takes the waveforms)")
SHIFT = (0.5, "the time-shifted negative: the soundtrack rolled by this fraction of its length")


def _check_clip_and_soundtrack(config, task: str) -> None:
    if config.model.audio is None:
        raise ConfigError(f"config key 'model.audio' is required by task {task!r} (e.g. {{'name': 'ast'}})")
    if not (config.data.num_frames and config.data.audio_samples):
        raise ConfigError(
            f"config keys 'data.num_frames' and 'data.audio_samples' must both be set with task {task!r}: batches "
            "hold a clip and its soundtrack"
        )
    if not 0 < config.model.shift < 1:
        raise ConfigError(f"config key 'model.shift' must be in (0, 1), got {config.model.shift}")


def _shifted(task: Task, batch):
    """The batch's soundtracks rolled by model.shift of their length, and their lengths."""
    waves, lengths = task.audio(batch)
    return time_shifted(waves, int(task.config.model.shift * waves.shape[-1])), lengths


class CorrespondenceTask(Task):
    MODEL_KEYS = {
        "image": IMAGE_TOWER,
        "audio": AUDIO_TOWER,
        "embed_dim": (128, "width of the shared clip-soundtrack embedding space"),
        "shift": SHIFT,
        "logit_scale_init": (2.302585, "initial log inverse temperature (log 10)"),
    }
    DATA_TASK = "image_text"
    DEFAULT_EVALS = {"correspondence": {"type": "correspondence"}}
    correspondence_score = staticmethod(mmeval.cosine_scores)

    @classmethod
    def validate_config(cls, config) -> None:
        _check_clip_and_soundtrack(config, "correspondence")

    def build_model(self, cfg) -> nn.Module:
        return AudioVisual(
            video_tower=tower_from_config(cfg.image, self.dtype),
            audio_tower=tower_from_config(cfg.audio, self.dtype),
            embed_dim=cfg.embed_dim,
            logit_scale_init=cfg.logit_scale_init,
            dtype=self.dtype,
        )

    def embeddings(self, params, batch, *, train: bool = False, rng=None) -> dict:
        """-> {video, audio, shifted}: normalized embeddings [B, E] of the clips, soundtracks and shifted ones."""
        rngs = {"dropout": rng} if rng is not None else {}
        apply = lambda *a, **kw: self.model.apply({"params": params}, *a, **kw, train=train, rngs=rngs)  # noqa: E731
        return {
            "video": apply(self.media(batch), method="encode_video"),
            "audio": apply(*self.audio(batch), method="encode_audio"),
            "shifted": apply(*_shifted(self, batch), method="encode_audio"),
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


class LocalizationTask(Task):
    MODEL_KEYS = {
        "image": IMAGE_TOWER,
        "audio": AUDIO_TOWER,
        "embed_dim": (128, "width of the shared patch-soundtrack embedding space"),
        "shift": (SHIFT[0], "the correspondence evaluator's time-shifted negative (not trained on): " + SHIFT[1]),
        "logit_scale_init": (2.302585, "initial log inverse temperature (log 10)"),
    }
    DATA_TASK = "image_text"
    DEFAULT_EVALS = {"localization": {"type": "localization"}}
    # A clip scores a soundtrack by its best patch a frame, as in training: a correspondence model too (AVOL-Net)
    correspondence_score = staticmethod(mmeval.best_patch_scores)

    @classmethod
    def validate_config(cls, config) -> None:
        _check_clip_and_soundtrack(config, "localization")
        if config.model.image.name != "frame_vit":
            raise ConfigError(
                f"config key 'model.image.name' must be 'frame_vit' with task 'localization' (its image ViT gives "
                f"each frame's patches), got {config.model.image.name!r}"
            )

    def build_model(self, cfg) -> nn.Module:
        fields = cfg.image.to_dict()
        for key in ("name", "variant", "num_frames", "temporal_depth", "tokens"):  # frame_vit's image ViT
            fields.pop(key, None)
        side = fields["image_size"] // fields["patch_size"]
        return SoundLocalizer(
            frame_tower=build_tower("vit", dtype=self.dtype, **fields),
            audio_tower=tower_from_config(cfg.audio, self.dtype),
            grid=(side, side),
            prefix=1 if fields["pooling"] == "tok" else 0,
            embed_dim=cfg.embed_dim,
            logit_scale_init=cfg.logit_scale_init,
            dtype=self.dtype,
        )

    def _apply(self, params, *args, train=False, rng=None, method):
        rngs = {"dropout": rng} if rng is not None else {}
        return self.model.apply({"params": params}, *args, train=train, rngs=rngs, method=method)

    def _patches(self, params, clip, **kw):
        """clip [B, T, H, W, C] -> patch embeddings [B, T, P, E]."""
        b, t = clip.shape[:2]
        patches = self._apply(params, clip.reshape(b * t, *clip.shape[2:]), method="encode_patches", **kw)
        return patches.reshape(b, t, *patches.shape[1:])

    def init(self, rng, batch):
        return self.model.init(rng, self.media(batch)[:, 0], *self.audio(batch))["params"]

    def loss(self, params, batch, rng):
        patches = self._patches(params, self.media(batch), train=True, rng=rng)
        audio = self._apply(params, *self.audio(batch), train=True, rng=rng, method="encode_audio")
        scores = self.model.apply({"params": params}, patches, audio, method="clip_scores")
        return losses.softmax_contrastive_loss(scores)

    def heatmaps(self, params, batch):
        """Each frame's heatmap [B, T, gh, gw]: the cosine of the clip's soundtrack to each patch."""
        patches = self._patches(params, self.media(batch))
        audio = self._apply(params, *self.audio(batch), method="encode_audio")
        cos = jnp.einsum("btpe,be->btp", patches, audio)
        return cos.reshape(*cos.shape[:2], *self.model.grid)

    def predict_localization(self, params, batch):
        """Each frame's heatmap maximum as a point [B, T, 2] (x, y in [0, 1]): the centre of its best patch."""
        maps = self.heatmaps(params, batch)
        gh, gw = self.model.grid
        best = jnp.argmax(maps.reshape(*maps.shape[:2], -1), axis=-1)
        return jnp.stack([(best % gw + 0.5) / gw, (best // gw + 0.5) / gh], axis=-1)

    def predict_correspondence(self, params, batch) -> dict:
        """{video: patch embeddings [B, T, P, E], audio, shifted: soundtrack embeddings [B, E]}, scored over the
        split by `correspondence_score`."""
        return {
            "video": self._patches(params, self.media(batch)),
            "audio": self._apply(params, *self.audio(batch), method="encode_audio"),
            "shifted": self._apply(params, *_shifted(self, batch), method="encode_audio"),
        }

    def pointing_tolerance(self) -> float:
        """Half a patch's side: the point is a patch centre, so a patch overlapping the box counts as a hit."""
        return 0.5 / self.model.grid[1]
