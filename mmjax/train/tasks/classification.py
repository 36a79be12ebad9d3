"""Classification of (image, text) pairs: one label per pair, from any batch key."""

from __future__ import annotations

import jax
import numpy as np

from mmjax.config.errors import ConfigError
from mmjax.train.tasks.labels import LabelTask


class ClassificationTask(LabelTask):
    """One label per (image, text) pair, read from the batch key model.label_key (e.g. 'answer' classifies VQA
    records); model.num_classes outputs; cross-entropy; accuracy."""

    MODEL_KEYS = {
        **LabelTask.MODEL_KEYS,
        "num_classes": (None, "(required) number of classes", None, int),
        "label_key": ("label", "the batch key holding the class id (e.g. 'answer' on VQA records)"),
    }
    DEFAULT_EVALS = {"classification": {"type": "classification"}}

    @classmethod
    def validate_config(cls, config) -> None:
        super().validate_config(config)
        if not isinstance(config.model.num_classes, int) or config.model.num_classes < 2:
            raise ConfigError(f"config key 'model.num_classes' must be an int >= 2, got {config.model.num_classes!r}")

    def num_outputs(self) -> int:
        return int(self.config.model.num_classes)

    def targets(self, batch):
        return jax.nn.one_hot(batch[self.config.model.label_key], self.num_outputs())

    def labels(self, batch):
        return batch[self.config.model.label_key]

    def class_names(self):
        # the dataset's class names name its `label` values; another key (VQA's `answer`) has its own ids
        return tuple(self.info.classes) if self.config.model.label_key == "label" else ()

    def step_batch(self, batch_size):
        return {**super().step_batch(batch_size), self.config.model.label_key: np.zeros(batch_size, np.int32)}
