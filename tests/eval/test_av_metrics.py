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


def test_pointing_hits_count_a_point_within_the_tolerance_of_the_box_along_each_axis():
    from mmjax.eval import pointing_hits

    box = np.array([0.2, 0.2, 0.4, 0.4])
    points = np.array([[0.3, 0.3], [0.45, 0.3], [0.5, 0.5], [0.1, 0.45], [0.44, 0.45]])
    np.testing.assert_array_equal(pointing_hits(points, np.broadcast_to(box, (5, 4)), 0.06), [1, 1, 0, 0, 1])


def test_localization_metrics_report_the_sounding_object_the_silent_one_and_the_centre_prior():
    from mmjax.eval import localization_metrics

    sounding, silent = [0.0, 0.0, 0.3, 0.3], [0.6, 0.6, 0.9, 0.9]
    boxes = np.broadcast_to(np.array([sounding, silent]), (2, 3, 2, 4))  # [N, T, K, 4]
    points = np.full((2, 3, 2), 0.15)
    points[1, 0] = 0.75  # one frame points at the silent object
    out = localization_metrics(points, boxes, 0.0)
    assert out == {
        "localization/pointing_accuracy": pytest.approx(5 / 6),
        "localization/centre_prior_accuracy": 0.0,
        "localization/silent_object_accuracy": pytest.approx(1 / 6),
    }


def test_best_patch_scores_take_each_frames_best_patch_and_average_the_frames():
    """A localizer scores a clip by where the sound is: its other patches (the silent shape) do not dilute it."""
    from mmjax.eval import best_patch_scores

    rng = np.random.default_rng(1)
    patches, audio = _unit(rng.standard_normal((5, 3, 4, 8))), _unit(rng.standard_normal((6, 8)))
    want = np.array([[np.mean([max(p @ a for p in frame) for frame in clip]) for a in audio] for clip in patches])
    np.testing.assert_allclose(best_patch_scores(patches, audio, chunk=2), want, atol=1e-6)
    # as a correspondence score: clip i's sound is in one place of each frame (patch 0), the rest is other things
    own = _unit(rng.standard_normal((5, 8)))
    patches[:, :, 0] = own[:, None]
    out = correspondence_metrics(patches, own, -own, score=best_patch_scores)
    assert out == {"correspondence/accuracy/other_clip": 1.0, "correspondence/accuracy/time_shift": 1.0}
