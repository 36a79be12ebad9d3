"""Tasks: the ONE place that joins a model from `models/` to its loss and to what its evaluators predict.

`TASKS` is the table `config.task` names; the protocol (what a task declares and supplies) is `base.Task`'s
docstring. Adding a task is one file and one entry here; the loop never changes.
"""

from __future__ import annotations

import ml_collections

from mmjax.data import DatasetInfo
from mmjax.train.tasks.audiovisual import CorrespondenceTask, LocalizationTask
from mmjax.train.tasks.base import DTYPES, Task, to_host, tower_from_config
from mmjax.train.tasks.captioning import CaptioningTask
from mmjax.train.tasks.classification import ClassificationTask
from mmjax.train.tasks.contrastive import ContrastiveTask
from mmjax.train.tasks.labels import MODEL_KINDS
from mmjax.train.tasks.pretrain import VisualBertPretrainTask, mask_tokens, mismatch_images
from mmjax.train.tasks.vqa import VQATask

TASKS: dict[str, type[Task]] = {
    "contrastive": ContrastiveTask,
    "vqa": VQATask,
    "classification": ClassificationTask,
    "visualbert_pretrain": VisualBertPretrainTask,
    "captioning": CaptioningTask,
    "correspondence": CorrespondenceTask,
    "localization": LocalizationTask,
}


def build_task(config: ml_collections.ConfigDict, info: DatasetInfo) -> Task:
    """The task `config.task` names (the schema has already checked the name) over a dataset described by `info`."""
    return TASKS[config.task](config, info)


__all__ = [
    "DTYPES",
    "MODEL_KINDS",
    "TASKS",
    "CaptioningTask",
    "ClassificationTask",
    "ContrastiveTask",
    "CorrespondenceTask",
    "LocalizationTask",
    "Task",
    "VQATask",
    "VisualBertPretrainTask",
    "build_task",
    "mask_tokens",
    "mismatch_images",
    "to_host",
    "tower_from_config",
]
