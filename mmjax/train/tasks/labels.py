"""What VQA and classification share: an image and a text in, one label (or soft answer scores) out.

config.model.kind picks the model from `MODEL_KINDS`:
  visualbert  VisualBERT (single stream). model.text is a Bert tower; model.visual is 'grid' (model.image's
              tokens become visual tokens, trained end to end) or 'regions' (detector-style: each object box
              of the dataset resampled by `crop_regions`, plus a box embedding; needs data.max_regions > 0).
  fusion      Classifier(towers {image, text}, fusion = model.fusion {name, ...fields}, head model.head).
              With model.visual='regions' the image tower is a `regions` tower (encoders.RegionEncoder) fed
              the same cropped regions and boxes as VisualBERT's region mode.
  tower       the visual tower alone (an image or a video tower) and the head: image or action classification.
  av          Classifier(towers {video: model.image, audio: model.audio}, fusion = model.fusion): a clip and its
              soundtrack (batches with data.num_frames and data.audio_samples), no text.
  audio       the audio tower (model.audio) alone and the head: on the same batches as av, the control that
              shows what the soundtrack alone gives (kind tower on the same batches is the video's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mmjax import losses
from mmjax.config.errors import ConfigError
from mmjax.config.schema import Named
from mmjax.encoders import RegionEmbeddings
from mmjax.encoders.regions import crop_regions
from mmjax.fusion import build_fusion
from mmjax.models import Classifier, VisualBertForQuestionAnswering, VisualBertModel
from mmjax.models.heads import HEADS
from mmjax.train.tasks.base import IMAGE_TOWER, Task, tower_from_config


def _visualbert(task: LabelTask, cfg) -> nn.Module:
    bert = tower_from_config(cfg.text, task.dtype)
    grid = cfg.visual == "grid"
    visual = RegionEmbeddings(
        width=bert.width,
        feature_dim=None if grid else cfg.region_size**2 * 3,
        max_length=bert.max_length,
        type_vocab_size=bert.type_vocab_size,
        use_boxes=not grid,
        box_frequencies=cfg.box_frequencies,
        image_tower=tower_from_config(cfg.image, task.dtype) if grid else None,
        dtype=task.dtype,
    )
    return VisualBertForQuestionAnswering(VisualBertModel(bert, visual), num_labels=task.num_outputs())


def _visualbert_inputs(text: dict, visual: dict) -> tuple[tuple, dict]:
    return (), {**text, **visual}


def _classifier(task: LabelTask, cfg, towers: dict, fusion: dict | None = None) -> nn.Module:
    """Classifier over `towers` ({modality: tower config}) joined by `fusion` (a {name, ...} dict; None: late fusion
    of one tower's pooled vector), with the config's head: what every non-VisualBERT kind builds."""
    fusion = dict(fusion or {"name": "late"})
    return Classifier(
        towers={m: tower_from_config(t, task.dtype) for m, t in towers.items()},
        fusion=build_fusion(fusion.pop("name"), dtype=task.dtype, **fusion),
        num_classes=task.num_outputs(),
        head=cfg.head,
    )


def _fusion(task: LabelTask, cfg) -> nn.Module:
    return _classifier(task, cfg, {"image": cfg.image, "text": cfg.text}, cfg.fusion.to_dict())


def _fusion_inputs(text: dict, visual: dict) -> tuple[tuple, dict]:
    image = visual.get("pixel_values", visual)  # a grid tower takes the pixels, a region tower the dict
    return ({"image": image, "text": (text["input_ids"], text["attention_mask"])},), {}


def _tower(task: LabelTask, cfg) -> nn.Module:
    # the visual tower alone (images or clips): its pooled vector through the head, no text
    return _classifier(task, cfg, {"image": cfg.image})


def _tower_inputs(text: dict, visual: dict) -> tuple[tuple, dict]:
    return ({"image": _fusion_inputs(text, visual)[0][0]["image"]},), {}


def _av(task: LabelTask, cfg) -> nn.Module:
    return _classifier(task, cfg, {"video": cfg.image, "audio": cfg.audio}, cfg.fusion.to_dict())


def _av_inputs(text: dict, visual: dict) -> tuple[tuple, dict]:
    return ({"video": visual["pixel_values"], "audio": visual["audio"]},), {}


def _audio(task: LabelTask, cfg) -> nn.Module:
    # the audio tower alone: its pooled vector through the head, no clip, no text
    return _classifier(task, cfg, {"audio": cfg.audio})


def _audio_inputs(text: dict, visual: dict) -> tuple[tuple, dict]:
    return ({"audio": visual["audio"]},), {}


@dataclasses.dataclass(frozen=True)
class ModelKind:
    build: Callable  # (task, config.model) -> module
    inputs: Callable  # (text inputs, visual inputs) -> the module's (args, kwargs)


MODEL_KINDS = {
    "visualbert": ModelKind(_visualbert, _visualbert_inputs),
    "fusion": ModelKind(_fusion, _fusion_inputs),
    "tower": ModelKind(_tower, _tower_inputs),
    "av": ModelKind(_av, _av_inputs),
    "audio": ModelKind(_audio, _audio_inputs),
}
# the kinds that read the soundtrack from `audio` beside a clip: they need model.audio and both data keys
_AV_KINDS = ("av", "audio")


class LabelTask(Task):
    """Shared by VQA and classification: model building, inputs, loss; subclasses name the targets."""

    MODEL_KEYS = {
        "kind": (
            "visualbert",
            "the model: visualbert (single stream), fusion (towers + a fusion), tower (the visual tower alone), "
            "av (a clip and its soundtrack: video + audio towers + a fusion) or audio (the audio tower alone)",
            tuple(MODEL_KINDS),
        ),
        "visual": ("grid", "visual tokens: grid (image tower tokens) or regions (object boxes)", ("grid", "regions")),
        "region_size": (8, "regions: pixels per side each box is resampled to"),
        "box_frequencies": (0, "visualbert regions: sinusoid octaves of the box coordinates (0: none)"),
        "loss": ("softmax", "softmax (one right answer) or bce (VQA soft scores)", ("softmax", "bce")),
        "head": ("classification", "fusion: the head on the fused tokens", tuple(HEADS)),
        "image": IMAGE_TOWER,
        "text": Named("tower", "bert", "the text tower (a bert tower for visualbert)"),
        "audio": Named("tower", None, "av, audio: the audio tower (with a frontend: it takes the waveforms)"),
        "fusion": Named("fusion", None, "fusion, av: {name, ...fields of that fusion module}"),
    }

    @classmethod
    def validate_config(cls, config) -> None:
        cfg = config.model
        if cfg.kind in ("fusion", "av") and cfg.fusion is None:
            raise ConfigError(
                f"config key 'model.fusion' is required with model.kind={cfg.kind!r} (e.g. {{'name': 'early'}})"
            )
        if cfg.kind in _AV_KINDS:
            data = config.data
            if cfg.audio is None:
                raise ConfigError(
                    f"config key 'model.audio' is required with model.kind={cfg.kind!r} (e.g. {{'name': 'ast'}})"
                )
            if not (data.num_frames and data.audio_samples):
                raise ConfigError(
                    f"config keys 'data.num_frames' and 'data.audio_samples' must both be set with model.kind="
                    f"{cfg.kind!r}: batches hold a clip and its soundtrack"
                )
            if cfg.visual != "grid":
                raise ConfigError(f"config key 'model.visual' must be 'grid' with model.kind={cfg.kind!r}")
        if cfg.kind in ("fusion", "tower") and (cfg.visual == "regions") != (cfg.image.name == "regions"):
            raise ConfigError(
                f"config key 'model.image.name' is {cfg.image.name!r} but 'model.visual' is {cfg.visual!r}: region "
                "inputs need the 'regions' tower, and the 'regions' tower needs model.visual='regions'"
            )
        if cfg.visual == "regions" and config.data.max_regions <= 0:
            raise ConfigError("config key 'data.max_regions' must be > 0 with model.visual='regions' (boxes per image)")

    def num_outputs(self) -> int:
        raise NotImplementedError

    def build_model(self, cfg) -> nn.Module:
        return MODEL_KINDS[cfg.kind].build(self, cfg)

    def init_batch(self) -> dict[str, np.ndarray]:
        batch = super().init_batch()
        regions = self.config.data.max_regions
        if regions:
            batch["boxes"] = np.tile(np.array([0.0, 0.0, 1.0, 1.0], np.float32), (1, regions, 1))
            batch["box_mask"] = np.ones((1, regions), np.int32)
        return batch

    def model_inputs(self, batch) -> tuple[tuple, dict]:
        """The model's (args, kwargs) for a batch: one place for init and apply."""
        text = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        visual = {"pixel_values": self.media(batch)} if self.config.model.visual == "grid" else self.regions(batch)
        if self.config.model.kind in _AV_KINDS:
            visual["audio"] = self.audio(batch)
        return MODEL_KINDS[self.config.model.kind].inputs(text, visual)

    def regions(self, batch) -> dict:
        """Detector-style region inputs: each box of the batch cropped to model.region_size pixels, plus boxes."""
        return {
            "visual_embeds": crop_regions(batch["image"], batch["boxes"], self.config.model.region_size),
            "visual_attention_mask": batch["box_mask"],
            "boxes": batch["boxes"],
        }

    def init(self, rng, batch):
        args, kwargs = self.model_inputs(batch)
        return self.model.init(rng, *args, **kwargs)["params"]

    def logits(self, params, batch, *, train: bool = False, rng=None):
        args, kwargs = self.model_inputs(batch)
        rngs = {"dropout": rng} if rng is not None else {}
        return self.model.apply({"params": params}, *args, **kwargs, train=train, rngs=rngs)["logits"]

    def loss(self, params, batch, rng):
        logits = self.logits(params, batch, train=True, rng=rng)
        targets = self.targets(batch)
        if self.config.model.loss == "bce":
            loss, metrics = losses.soft_sigmoid_cross_entropy(logits, targets)
        else:
            loss, metrics = losses.masked_cross_entropy(logits, jnp.argmax(targets, -1))
        return loss, {**metrics, "accuracy": jnp.mean(self.scores(logits, targets))}

    def scores(self, logits, targets):
        """Per-example credit of the arg-max prediction: its soft target (VQA accuracy), 0/1 for one-hot."""
        return jnp.take_along_axis(targets, jnp.argmax(logits, -1)[:, None], axis=-1)[:, 0]

    def predict_scores(self, params, batch):
        """Per-example credit [B] of the model's answer (the eval predict function)."""
        return self.scores(self.logits(params, batch), self.targets(batch))

    def targets(self, batch):
        raise NotImplementedError

    def labels(self, batch):
        """The true class id [B] of each example (-1: none)."""
        raise NotImplementedError

    def class_names(self) -> tuple[str, ...]:
        """The names of the class ids `labels` gives (index = id), where the dataset knows them; else ()."""
        return ()
