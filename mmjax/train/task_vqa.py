"""VQA and classification over fused modalities: an image and a text in, one label (or soft answer scores) out.

config.model.kind:
  'visualbert'  VisualBERT (single stream). model.text is a Bert tower; model.visual is 'grid' (model.image's
                tokens become visual tokens, trained end to end) or 'regions' (detector-style: each object box
                of the dataset resampled by `crop_regions`, plus a box embedding; needs data.max_regions > 0).
  'fusion'      Classifier(towers {image, text}, fusion = model.fusion {name, ...fields}, head model.head).
                With model.visual='regions' the image tower is a `regions` tower (encoders.RegionEncoder) fed
                the same cropped regions and boxes as VisualBERT's region mode.
config.model.loss: 'softmax' (one right answer; cross-entropy) or 'bce' (VQA soft scores, as in VisualBERT).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax import data as mmdata
from mmjax import losses
from mmjax.encoders import RegionEmbeddings
from mmjax.encoders.regions import crop_regions
from mmjax.eval import accuracy_by_type
from mmjax.fusion import build_fusion
from mmjax.models import Classifier, VisualBertForQuestionAnswering, VisualBertModel
from mmjax.train.task_base import Task, to_host, tower_from_config


class _ImageTextLabelTask(Task):
    """Shared by VQA and classification: model building, inputs, loss; subclasses name the targets."""

    def num_outputs(self) -> int:
        raise NotImplementedError

    def build_model(self, cfg) -> nn.Module:
        if cfg.kind == "visualbert":
            bert = tower_from_config(cfg.text, self.dtype)
            grid = cfg.visual == "grid"
            visual = RegionEmbeddings(
                width=bert.width,
                feature_dim=None if grid else cfg.region_size**2 * 3,
                max_length=bert.max_length,
                type_vocab_size=bert.type_vocab_size,
                use_boxes=not grid,
                box_frequencies=cfg.get("box_frequencies", 0),
                image_tower=tower_from_config(cfg.image, self.dtype) if grid else None,
                dtype=self.dtype,
            )
            return VisualBertForQuestionAnswering(VisualBertModel(bert, visual), num_labels=self.num_outputs())
        if cfg.kind == "fusion":
            regions, tower = cfg.get("visual", "grid") == "regions", cfg.image.name
            if regions != (tower == "regions"):
                raise ValueError(
                    f"config key 'model.image.name' is {tower!r} but 'model.visual' is {cfg.get('visual', 'grid')!r}: "
                    "region inputs need the 'regions' tower, and the 'regions' tower needs model.visual='regions'"
                )
            fusion = cfg.fusion.to_dict()
            return Classifier(
                towers={
                    "image": tower_from_config(cfg.image, self.dtype),
                    "text": tower_from_config(cfg.text, self.dtype),
                },
                fusion=build_fusion(fusion.pop("name"), dtype=self.dtype, **fusion),
                num_classes=self.num_outputs(),
                head=cfg.get("head", "classification"),
            )
        raise ValueError(f"config key 'model.kind' must be 'visualbert' or 'fusion', got {cfg.kind!r}")

    def init_batch(self) -> dict[str, np.ndarray]:
        batch = self.image_text_batch()
        regions = self.config.data.get("max_regions", 0)
        if regions:
            batch["boxes"] = np.tile(np.array([0.0, 0.0, 1.0, 1.0], np.float32), (1, regions, 1))
            batch["box_mask"] = np.ones((1, regions), np.int32)
        return batch

    def model_inputs(self, batch) -> tuple[tuple, dict]:
        """The model's (args, kwargs) for a batch: one place for init and apply."""
        cfg = self.config.model
        text = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        visual = {"pixel_values": batch["image"]} if cfg.get("visual", "grid") == "grid" else self.regions(batch)
        if cfg.kind == "fusion":
            image = visual.get("pixel_values", visual)  # a grid tower takes the pixels, a region tower the dict
            return ({"image": image, "text": (text["input_ids"], text["attention_mask"])},), {}
        return (), {**text, **visual}

    def regions(self, batch) -> dict:
        """Detector-style region inputs: each box of the batch cropped to model.region_size pixels, plus boxes."""
        if "boxes" not in batch:
            raise ValueError("model.visual='regions' needs data.max_regions > 0 (the batches carry no boxes)")
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
        if self.config.model.get("loss", "softmax") == "bce":
            loss, metrics = losses.soft_sigmoid_cross_entropy(logits, targets)
        else:
            loss, metrics = losses.masked_cross_entropy(logits, jnp.argmax(targets, -1))
        return loss, {**metrics, "accuracy": jnp.mean(self.scores(logits, targets))}

    def scores(self, logits, targets):
        """Per-example credit of the arg-max prediction: its soft target (VQA accuracy), 0/1 for one-hot."""
        return jnp.take_along_axis(targets, jnp.argmax(logits, -1)[:, None], axis=-1)[:, 0]

    def targets(self, batch):
        raise NotImplementedError

    def evaluate(self, params, mesh, split: str | None = None) -> dict[str, Any]:
        step = jax.jit(lambda p, b: (self.scores(self.logits(p, b), self.targets(b)), self.group(b)))
        scores, groups = [], []
        for batch in self.eval_data(mesh, split):
            score, group = to_host(step(params, batch))
            real = to_host(batch["example_mask"]).astype(bool)
            scores.append(score[real])
            groups.append(group[real])
        return self.summarize(np.concatenate(scores), np.concatenate(groups))

    def group(self, batch):
        return jnp.zeros(batch["example_mask"].shape, jnp.int32)

    def summarize(self, scores, groups) -> dict[str, float]:
        raise NotImplementedError


class VQATask(_ImageTextLabelTask):
    """Visual question answering over the dataset's answer vocabulary; accuracy overall and per question type.

    Targets are the soft answer scores the pipeline provides (`answer_scores`, min(#annotators / 3, 1) for
    multi-annotator sets, one-hot for single-answer sets), so accuracy is the standard VQA accuracy.
    """

    def __init__(self, config):
        source = mmdata.open_source(config.data, "train")
        if not source.answers:
            raise ValueError(f"{source.where} records no answer vocabulary; set data.answers for a VQA task")
        self.answers, self.question_types = source.answers, source.question_types
        super().__init__(config)

    def num_outputs(self) -> int:
        return len(self.answers)

    def targets(self, batch):
        return batch["answer_scores"].astype(jnp.float32)

    def step_batch(self, batch_size):
        batch = super().step_batch(batch_size)
        scores = np.zeros((batch_size, self.num_outputs()), np.float32)
        scores[:, 0] = 1.0
        return {**batch, "answer_scores": scores, "question_type": np.zeros((batch_size,), np.int32)}

    def group(self, batch):
        return batch["question_type"]

    def summarize(self, scores, groups):
        out = {"vqa/accuracy": float(np.mean(scores)) if len(scores) else 0.0}
        out.update(accuracy_by_type(scores, groups, list(self.question_types) or None, prefix="vqa"))
        return out


class ClassificationTask(_ImageTextLabelTask):
    """One label per (image, text) pair, read from the batch key model.label_key (default 'label'; e.g.
    'answer' classifies VQA records); model.num_classes outputs; cross-entropy; accuracy."""

    def num_outputs(self) -> int:
        return int(self.config.model.num_classes)

    def targets(self, batch):
        return jax.nn.one_hot(batch[self.config.model.get("label_key", "label")], self.num_outputs())

    def step_batch(self, batch_size):
        return {
            **super().step_batch(batch_size),
            self.config.model.get("label_key", "label"): np.zeros(batch_size, np.int32),
        }

    def summarize(self, scores, groups):
        return {"classification/accuracy": float(np.mean(scores)) if len(scores) else 0.0}
