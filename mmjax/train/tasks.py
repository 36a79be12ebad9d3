"""Tasks: the ONE place that joins a model from `models/` to its loss, its metrics and its evals.

A task is built from the whole config and supplies:
  model                         the Linen module (from config.model)
  init_batch()                  a batch of one example with the shapes the model is initialized with
  init(rng, batch)              boxed parameters (LogicallyPartitioned leaves: the loop shards them)
  loss(params, batch, rng)      (scalar loss, metrics) for one training batch; pure, jitted by the loop
  evaluate(params, mesh)        {name: number} on the eval split, written to workdir/eval.json
Adding a task is one class and one entry in TASKS; the loop never changes.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from mmjax import losses
from mmjax.models import CLIP
from mmjax.train.task_base import Task, to_host, tokenizer_of, tower_from_config
from mmjax.train.task_captioning import CaptioningTask
from mmjax.train.task_pretrain import VisualBertPretrainTask
from mmjax.train.task_vqa import ClassificationTask, VQATask


class ContrastiveTask(Task):
    """CLIP (softmax) or SigLIP (sigmoid) image-text training; evaluated by retrieval in both directions.

    config.model: image {name, ...}, text {name, ...}, embed_dim, loss ('softmax' | 'sigmoid'),
    logit_scale_init, logit_bias_init (SigLIP), max_logit_scale, dtype.
    config.eval.zeroshot (optional): evaluate by zero-shot classification instead of retrieval, over the eval
    split's image classes: {templates: prompt templates with one "{}" (default mmjax.eval.DEFAULT_TEMPLATES),
    classes: class names (default: the dataset's)}. Classes in data.holdout_labels are reported apart
    ("zeroshot/heldout/...", "zeroshot/seen/...").
    With gradient accumulation each micro-batch's examples are each other's negatives (a smaller effective
    contrastive batch); prefer more devices or a smaller model to accumulation for contrastive training.
    """

    def build_model(self, cfg) -> nn.Module:
        sigmoid = cfg.get("loss", "softmax") == "sigmoid"
        default_scale = math.log(10.0) if sigmoid else math.log(1 / 0.07)
        return CLIP(
            image_tower=tower_from_config(cfg.image, self.dtype),
            text_tower=tower_from_config(cfg.text, self.dtype),
            embed_dim=cfg.embed_dim,
            logit_scale_init=cfg.get("logit_scale_init", None) or default_scale,
            logit_bias_init=cfg.get("logit_bias_init", -10.0 if sigmoid else None),
            max_logit_scale=cfg.get("max_logit_scale", 100.0),
            dtype=self.dtype,
        )

    def loss(self, params, batch, rng):
        out = self.model.apply(
            {"params": params},
            batch["image"],
            batch["input_ids"],
            batch["attention_mask"],
            train=True,
            rngs={"dropout": rng},
        )
        loss_fn = (
            losses.sigmoid_contrastive_loss
            if self.config.model.get("loss", "softmax") == "sigmoid"
            else losses.softmax_contrastive_loss
        )
        loss, metrics = loss_fn(out["logits_per_image"])
        return loss, {**metrics, "logit_scale": out["logit_scale"]}

    def embed(self, params, batch):
        """Image embeddings [B, E] and caption embeddings [B, K, E] (K captions per image)."""
        image = self.model.apply({"params": params}, batch["image"], method="encode_image")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        b, k, t = ids.shape
        text = self.model.apply({"params": params}, ids.reshape(b * k, t), mask.reshape(b * k, t), method="encode_text")
        return image, text.reshape(b, k, -1)

    def evaluate(self, params, mesh, split: str | None = None) -> dict[str, Any]:
        if self.config.get("eval", {}).get("zeroshot", None):
            return self.evaluate_zeroshot(params, mesh, split)
        from mmjax.eval import retrieval_metrics  # eval/ takes model outputs; imported here to keep startup light

        embed = jax.jit(self.embed)
        images, texts, text_to_image = [], [], []
        offset = 0
        for batch in self.eval_data(mesh, split, captions="all"):
            image, text = to_host(embed(params, batch))
            real = to_host(batch["example_mask"]).astype(bool)
            caption_mask = to_host(batch["caption_mask"]).astype(bool)[real]
            images.append(image[real])
            texts.append(text[real][caption_mask])
            text_to_image.append(np.repeat(np.arange(int(real.sum())) + offset, caption_mask.sum(1)))
            offset += int(real.sum())
        return retrieval_metrics(np.concatenate(images), np.concatenate(texts), np.concatenate(text_to_image))

    def evaluate_zeroshot(self, params, mesh, split: str | None = None) -> dict[str, Any]:
        """Every eval image against one prompt-averaged text embedding per class (the CLIP recipe)."""
        from mmjax import data as mmdata
        from mmjax.eval import DEFAULT_TEMPLATES, encode_class_prompts, zeroshot_metrics

        cfg = self.config.eval.zeroshot
        split = split or self.config.eval.get("split", "validation")
        classes = tuple(cfg.get("classes", None) or mmdata.open_source(self.config.data, split).classes)
        if not classes:
            raise ValueError(f"eval.zeroshot: the {split!r} split records no class names; set eval.zeroshot.classes")
        tokenize = tokenizer_of(self.config)
        encode = jax.jit(lambda p, ids, mask: self.model.apply({"params": p}, ids, mask, method="encode_text"))

        def encode_text(texts):
            tokens = tokenize(texts)
            return encode(params, tokens["input_ids"], tokens["attention_mask"])

        templates = tuple(cfg.get("templates", None) or DEFAULT_TEMPLATES)
        prompts = encode_class_prompts(encode_text, classes, templates, batch_size=256)
        encode_image = jax.jit(lambda p, image: self.model.apply({"params": p}, image, method="encode_image"))
        images, labels = [], []
        for batch in self.eval_data(mesh, split):
            image, label = to_host((encode_image(params, batch["image"]), batch["label"]))
            real = to_host(batch["example_mask"]).astype(bool)
            images.append(image[real])
            labels.append(label[real])
        labels = np.concatenate(labels)
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(classes):
            raise ValueError(f"eval.zeroshot: {split!r} has labels outside [0, {len(classes)}) (its class names)")
        heldout = sorted(int(v) for v in self.config.data.get("holdout_labels", ()))
        subsets = {"heldout": heldout, "seen": [c for c in range(len(classes)) if c not in heldout]} if heldout else {}
        return zeroshot_metrics(
            np.concatenate(images), prompts, labels, subsets=subsets, class_names=classes, per_class=True
        )


TASKS: dict[str, type[Task]] = {
    "contrastive": ContrastiveTask,
    "vqa": VQATask,
    "classification": ClassificationTask,
    "visualbert_pretrain": VisualBertPretrainTask,
    "captioning": CaptioningTask,
}


def build_task(config: ml_collections.ConfigDict) -> Task:
    name = config.task
    if name not in TASKS:
        raise ValueError(f"config key 'task' is {name!r}; available tasks: {sorted(TASKS)}")
    return TASKS[name](config)
