"""Visual question answering: VisualBERT or any fusion classifier over the dataset's answer vocabulary."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from mmjax.config.errors import ConfigError
from mmjax.train.tasks.labels import LabelTask


class VQATask(LabelTask):
    """Visual question answering over the dataset's answer vocabulary; accuracy overall and per question type.

    Targets are the soft answer scores the pipeline provides (`answer_scores`, min(#annotators / 3, 1) for
    multi-annotator sets, one-hot for single-answer sets), so accuracy is the standard VQA accuracy.
    """

    DATA_TASK = "vqa"
    DEFAULT_EVALS = {"vqa": {"type": "vqa"}}

    def __init__(self, config, info):
        if not info.answers:
            raise ConfigError("config key 'data.answers' must be set: the dataset records no answer vocabulary")
        super().__init__(config, info)

    def num_outputs(self) -> int:
        return len(self.info.answers)

    def targets(self, batch):
        return batch["answer_scores"].astype(jnp.float32)

    def labels(self, batch):
        return batch["answer"]  # the answer id (-1: not in the vocabulary)

    def step_batch(self, batch_size):
        batch = super().step_batch(batch_size)
        scores = np.zeros((batch_size, self.num_outputs()), np.float32)
        scores[:, 0] = 1.0
        return {**batch, "answer_scores": scores, "question_type": np.zeros((batch_size,), np.int32)}
