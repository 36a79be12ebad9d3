"""Correspondence accuracy: each negative kind apart, over the whole split (not per batch)."""

import numpy as np
import pytest

from mmjax.eval import correspondence_metrics


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_a_perfect_model_beats_every_negative_and_ties_count_as_wrong():
    eye = np.eye(4)
    out = correspondence_metrics(eye, eye, np.roll(eye, 1, axis=0))
    assert out == {"correspondence/accuracy/other_clip": 1.0, "correspondence/accuracy/time_shift": 1.0}
    same = np.ones((4, 3))  # every embedding alike: no pair is told apart
    out = correspondence_metrics(same, same, same)
    assert out == {"correspondence/accuracy/other_clip": 0.0, "correspondence/accuracy/time_shift": 0.0}


def test_other_clip_accuracy_is_the_mean_fraction_of_other_soundtracks_beaten():
    rng = np.random.default_rng(0)
    video, audio, shifted = (_unit(rng.standard_normal((5, 8))) for _ in range(3))
    scores = video @ audio.T
    want = np.mean([np.mean([scores[i, i] > scores[i, j] for j in range(5) if j != i]) for i in range(5)])
    got = correspondence_metrics(video, audio, shifted)
    assert got["correspondence/accuracy/other_clip"] == pytest.approx(want)
    assert got["correspondence/accuracy/time_shift"] == pytest.approx(
        np.mean(np.diag(scores) > (video * shifted).sum(1))
    )
    # the order of the split does not matter (nor, hence, how it was batched)
    order = rng.permutation(5)
    assert correspondence_metrics(video[order], audio[order], shifted[order]) == pytest.approx(got)
