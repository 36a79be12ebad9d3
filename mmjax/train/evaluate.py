"""Evaluators as a layer (big_vision's `config.evals`): each named entry has a type, a split and a schedule.

    evals = {
        "retrieval": {"split": "test", "every": 500},                           # type = the entry's name
        "compositional": {"type": "zeroshot", "split": "compositional", "every": 0, "at_end": True},
    }

An evaluator asks the task for a per-example predict function; `predict_split` (one loop for every evaluator)
runs it jitted over the split's ordered pipeline, gathers it to the host, keeps the real rows of the padded last
batch and concatenates; `mmjax.eval` turns the arrays into numbers. Metric names are the evaluator's, prefixed with
`prefix/` when the entry has one (by default its name when that differs from its type).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import jax
import ml_collections
import numpy as np

from mmjax import data as mmdata
from mmjax import eval as mmeval
from mmjax.config import ConfigError
from mmjax.train.inputs import data_config
from mmjax.train.step import compiler_options
from mmjax.train.tasks import Task, to_host


def predict_split(fn: Callable, params, batches: Iterable[dict], where: str = "the split") -> dict[str, np.ndarray]:
    """fn(params, batch) -> {name: per-example array [B, ...]} (jit it once: it runs per batch) over every batch,
    gathered to the host; only real examples are kept (a padded last batch adds none)."""
    chunks: list[dict[str, np.ndarray]] = []
    for batch in batches:
        out, real = to_host((fn(params, batch), batch["example_mask"]))
        chunks.append({k: v[real.astype(bool)] for k, v in out.items()})
    if not chunks:
        raise ValueError(f"{where} has no examples to evaluate")
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


class Evaluator:
    """One `config.evals` entry. Subclasses declare KEYS (their own config keys), DATA (what their split's pipeline
    needs, e.g. all captions) and define `predict(params, batch)` and `metrics(outputs)`."""

    KEYS: ClassVar[dict] = {}
    DATA: ClassVar[dict] = {}
    NEEDS: ClassVar[tuple[str, ...]] = ()  # the task methods `predict` calls (checked before a run starts)

    def __init__(self, name: str, cfg: ml_collections.ConfigDict, task: Task):
        self.name, self.cfg, self.task = name, cfg, task
        # compiled once per batch shape, reused at every evaluation
        self.compiler_options = compiler_options(task.config)
        self.jitted_predict = jax.jit(self.predict, compiler_options=self.compiler_options)

    def batches(self, mesh, split: str | None = None):
        cfg = data_config(self.task.config, batch_size=self.cfg.batch_size, **self.DATA)
        return mmdata.build_pipeline(cfg, split or self.cfg.split, train=False, mesh=mesh)

    def predict(self, params, batch) -> dict:
        raise NotImplementedError

    def metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        raise NotImplementedError

    def run(self, params, mesh, split: str | None = None) -> dict[str, float]:
        """The metrics on the evaluator's split (or `split`), named with the entry's prefix."""
        where = f"evals.{self.name} (split {split or self.cfg.split!r})"
        metrics = self.metrics(predict_split(self.jitted_predict, params, self.batches(mesh, split), where))
        prefix = "/".join(p for p in (split if split and split != self.cfg.split else "", self.cfg.prefix) if p)
        return {f"{prefix}/{k}" if prefix else k: v for k, v in metrics.items()}

    def due(self, step: int, total: int) -> bool:
        """Whether it runs after `step` of a run of `total` steps: on its schedule, and also at the end."""
        return (self.cfg.every > 0 and step % self.cfg.every == 0) or (step == total and bool(self.cfg.at_end))


class Retrieval(Evaluator):
    """Text-to-image and image-to-text recall@{1,5,10} over every caption of the split's images."""

    DATA = {"captions": "all"}
    NEEDS = ("encode_image", "encode_text")

    def predict(self, params, batch):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        b, k, t = ids.shape
        text = self.task.encode_text(params, ids.reshape(b * k, t), mask.reshape(b * k, t)).reshape(b, k, -1)
        image = self.task.encode_image(params, self.task.media(batch))
        return {"image": image, "text": text, "caption_mask": batch["caption_mask"]}

    def metrics(self, out):
        real = out["caption_mask"].astype(bool)
        text_to_image = np.repeat(np.arange(len(out["image"])), real.sum(1))
        return mmeval.retrieval_metrics(out["image"], out["text"][real], text_to_image)


class ZeroShot(Evaluator):
    """Every image against one prompt-averaged text embedding per class (the CLIP recipe); classes in
    data.holdout_labels are reported apart ("zeroshot/heldout/...", "zeroshot/seen/...")."""

    KEYS = {
        "templates": (mmeval.DEFAULT_TEMPLATES, "prompt templates with one '{}' for the class name"),
        "classes": (None, "class names (index = label); None: the dataset's", None, tuple),
    }
    NEEDS = ("encode_image", "encode_text")

    def __init__(self, name, cfg, task):
        super().__init__(name, cfg, task)
        self.classes = tuple(cfg.classes or task.info.classes)
        if not self.classes:
            raise ConfigError(f"config key 'evals.{name}.classes' must be set: the dataset records no class names")
        self.encode_text = jax.jit(task.encode_text, compiler_options=self.compiler_options)

    def predict(self, params, batch):
        return {"image": self.task.encode_image(params, self.task.media(batch)), "label": batch["label"]}

    def run(self, params, mesh, split: str | None = None):
        def encode_text(texts):
            tokens = self.task.tokenizer(texts)
            return self.encode_text(params, tokens["input_ids"], tokens["attention_mask"])

        templates = tuple(self.cfg.templates)
        self.prompts = mmeval.encode_class_prompts(encode_text, self.classes, templates, batch_size=256)
        return super().run(params, mesh, split)

    def metrics(self, out):
        labels, classes = out["label"], self.classes
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(classes):
            raise ValueError(f"evals.{self.name}: labels outside [0, {len(classes)}) (the class names)")
        heldout = sorted(int(v) for v in self.task.config.data.holdout_labels)
        subsets = {"heldout": heldout, "seen": [c for c in range(len(classes)) if c not in heldout]} if heldout else {}
        return mmeval.zeroshot_metrics(
            out["image"], self.prompts, labels, subsets=subsets, class_names=classes, per_class=True
        )


class VQA(Evaluator):
    """VQA accuracy (soft scores) overall and per question type."""

    NEEDS = ("predict_scores",)

    def predict(self, params, batch):
        return {"score": self.task.predict_scores(params, batch), "group": batch["question_type"]}

    def metrics(self, out):
        scores = out["score"]
        result = {"vqa/accuracy": float(np.mean(scores)) if len(scores) else 0.0}
        types = list(self.task.info.question_types)
        if types:  # a dataset without question types (your own JSONL) has the overall accuracy only
            result.update(mmeval.accuracy_by_type(scores, out["group"], types, prefix="vqa"))
        return result


class Classification(Evaluator):
    """Accuracy of the arg-max class; per true class too when the task knows the classes' names."""

    NEEDS = ("predict_scores", "labels", "class_names")

    def predict(self, params, batch):
        return {"score": self.task.predict_scores(params, batch), "label": self.task.labels(batch)}

    def metrics(self, out):
        return mmeval.classification_metrics(out["score"], out["label"], self.task.class_names())


class Captioning(Evaluator):
    """Greedy captions against every reference caption: BLEU-4 and CIDEr-D."""

    DATA = {"captions": "all"}
    NEEDS = ("generate", "text")

    def predict(self, params, batch):
        return {
            "tokens": self.task.generate(params, self.task.media(batch)),
            "references": batch["input_ids"],
            "caption_mask": batch["caption_mask"],
        }

    def metrics(self, out):
        text = self.task.text
        predictions = [text(t) for t in out["tokens"]]
        references = [
            [text(ids) for ids, real in zip(refs, mask) if real]
            for refs, mask in zip(out["references"], out["caption_mask"])
        ]
        return mmeval.captioning_metrics(predictions, references)


class Correspondence(Evaluator):
    """Audio-visual correspondence: each clip's own soundtrack against every other clip's, and against its own
    shifted in time, reported apart (`mmjax.eval.correspondence_metrics`), each pair scored the task's way
    (`correspondence_score`: embeddings' cosine, or a localizer's best patch a frame)."""

    NEEDS = ("predict_correspondence", "correspondence_score")

    def predict(self, params, batch):
        return self.task.predict_correspondence(params, batch)

    def metrics(self, out):
        score = self.task.correspondence_score
        return mmeval.correspondence_metrics(out["video"], out["audio"], out["shifted"], score=score)


class Localization(Evaluator):
    """Sound localization: the pointing game of each frame's heatmap maximum against the sounding object's box in
    that frame, beside the centre prior (`mmjax.eval.localization_metrics`). Only this split's batches carry boxes
    (data.sounding_boxes); training never sees one."""

    DATA = {"sounding_boxes": True}
    NEEDS = ("predict_localization", "pointing_tolerance")

    def predict(self, params, batch):
        return {"points": self.task.predict_localization(params, batch), "boxes": batch["sounding_boxes"]}

    def metrics(self, out):
        return mmeval.localization_metrics(out["points"], out["boxes"], self.task.pointing_tolerance())


class Pretrain(Evaluator):
    """Masked-token loss and accuracy over every masked token of the split, pair loss and accuracy over every
    example (each example weighs the same, whichever batch it is in)."""

    NEEDS = ("predict_pretrain",)

    def predict(self, params, batch):
        return self.task.predict_pretrain(params, batch)

    def metrics(self, out):
        tokens = max(int(out["mlm_count"].sum()), 1)
        examples = max(len(out["itm_loss"]), 1)
        return {
            "pretrain/mlm_loss": float(out["mlm_loss"].sum() / tokens),
            "pretrain/mlm_accuracy": float(out["mlm_hits"].sum() / tokens),
            "pretrain/itm_loss": float(out["itm_loss"].sum() / examples),
            "pretrain/itm_accuracy": float(out["itm_hits"].sum() / examples),
        }


EVALUATORS: dict[str, type[Evaluator]] = {
    "retrieval": Retrieval,
    "zeroshot": ZeroShot,
    "vqa": VQA,
    "classification": Classification,
    "captioning": Captioning,
    "pretrain": Pretrain,
    "correspondence": Correspondence,
    "localization": Localization,
}


def supported(task_class) -> list[str]:
    """The evaluator types a task class can serve: those whose NEEDS it has."""
    return [name for name, cls in EVALUATORS.items() if all(hasattr(task_class, m) for m in cls.NEEDS)]


def build_evaluators(config: ml_collections.ConfigDict, task: Task) -> dict[str, Evaluator]:
    """The evaluators `config.evals` names, in order (the schema has checked their types)."""
    return {name: EVALUATORS[cfg.type](name, cfg, task) for name, cfg in config.evals.items()}


def run_evaluators(evaluators: Iterable[Evaluator], params, mesh, split: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for evaluator in evaluators:
        out.update(evaluator.run(params, mesh, split))
    return out
