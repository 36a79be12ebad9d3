"""Classification accuracy overall and per true class."""

import numpy as np
import pytest

from mmjax.eval import classification_metrics

NAMES = ("left", "right", "grows")


def test_per_class_accuracy_is_over_each_true_class_examples():
    hits = np.array([1, 1, 0, 0, 1, 0, 1])
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    metrics = classification_metrics(hits, labels, NAMES)
    assert metrics == pytest.approx(
        {
            "classification/accuracy": 4 / 7,
            "classification/accuracy/left": 2 / 3,
            "classification/accuracy/right": 1 / 2,
            "classification/accuracy/grows": 1 / 2,
        }
    )


def test_classes_without_examples_are_absent_and_unknown_labels_named_so():
    metrics = classification_metrics(np.array([1.0, 0.0]), np.array([1, 5]), NAMES, prefix="video")
    assert metrics == {"video/accuracy": 0.5, "video/accuracy/right": 1.0, "video/accuracy/unknown": 0.0}


def test_without_class_names_only_the_overall_accuracy():
    assert classification_metrics(np.array([True, False]), np.array([0, 1])) == {"classification/accuracy": 0.5}
    assert classification_metrics(np.zeros(0), np.zeros(0, int), NAMES) == {"classification/accuracy": 0.0}
