"""Classification accuracy, overall and per true class: per class is what shows which classes a model cannot tell
apart (a video model blind to frame order leaves the motions that are each other's time reversal at chance)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmjax.eval.vqa import accuracy_by_type


def classification_metrics(
    hits: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None, *, prefix: str = "classification"
) -> dict[str, float]:
    """hits [N] (1 where the arg-max class is the true one), labels [N] int true classes -> f"{prefix}/accuracy"
    and, given `class_names` (index = label), f"{prefix}/accuracy/{name}" over the examples of each class that has
    any (a label outside the names is "unknown"). No examples: accuracy 0."""
    hits = np.asarray(hits, np.float64)
    metrics = {f"{prefix}/accuracy": float(hits.mean()) if hits.size else 0.0}
    if class_names:
        metrics.update(accuracy_by_type(hits, np.asarray(labels).astype(int), list(class_names), prefix=prefix))
    return metrics
