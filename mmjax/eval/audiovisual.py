"""Audio-visual metrics from arrays: correspondence (how often the true soundtrack outscores each kind of negative)
and sound localization (the pointing game, and the centre prior it must beat)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def cosine_scores(video: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """video [N, E], audio [M, E] (normalized embeddings) -> [N, M] cosines."""
    return np.asarray(video, np.float64) @ np.asarray(audio, np.float64).T


def best_patch_scores(patches: np.ndarray, audio: np.ndarray, *, chunk: int = 64) -> np.ndarray:
    """patches [N, T, P, E] (each clip's frames' normalized patch embeddings), audio [M, E] -> [N, M]: a clip's
    score for a soundtrack is the cosine of each frame's best-matching patch, averaged over the frames (what
    `SoundLocalizer.clip_scores` trains, without its scale; AVOL-Net's max-pooled correspondence). `chunk` clips
    at a time bound the [chunk, T, P, M] cosines held at once."""
    audio = np.asarray(audio, np.float32)
    rows = [
        np.einsum("ntpe,me->ntpm", np.asarray(patches[i : i + chunk], np.float32), audio).max(2).mean(1)
        for i in range(0, len(patches), chunk)
    ]
    return np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, len(audio)))


def correspondence_metrics(
    video: np.ndarray,
    audio: np.ndarray,
    shifted: np.ndarray,
    *,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray] = cosine_scores,
    prefix: str = "correspondence",
) -> dict[str, float]:
    """video, audio, shifted: row i is clip i's representation, its soundtrack's and that soundtrack's shifted in
    time; `score(video, audio)` -> [N, M] scores every clip against every soundtrack (default: cosine of [N, E]
    embeddings; `best_patch_scores` for a localizer's patches).

    A (positive, negative) pair is right when the clip scores its own soundtrack above the negative:
      f"{prefix}/accuracy/other_clip"   over every pair (clip i, soundtrack j != i) of the split: the mean over
                                        clips of the fraction of other soundtracks scored below its own;
      f"{prefix}/accuracy/time_shift"   over every clip, against its own soundtrack shifted in time.
    Both are functions of the whole split alone, not of how it was batched. One clip: other_clip is 0."""
    scores = score(video, audio)  # [N, N]
    positive = np.diagonal(scores)
    n = len(scores)
    beaten = (positive[:, None] > scores).sum(1)  # the diagonal never counts: a score is not above itself
    other = float((beaten / (n - 1)).mean()) if n > 1 else 0.0
    shift = float((positive > _paired(score, video, shifted)).mean()) if n else 0.0
    return {f"{prefix}/accuracy/other_clip": other, f"{prefix}/accuracy/time_shift": shift}


def _paired(score, video, audio, chunk: int = 64) -> np.ndarray:
    """score(video[i], audio[i]) for every i, [N]: the diagonal of `score`, computed a block of rows at a time
    rather than over the whole [N, N] square (a localizer's score costs T x P per pair)."""
    return np.concatenate(
        [np.diagonal(score(video[i : i + chunk], audio[i : i + chunk])) for i in range(0, len(video), chunk)]
    )


def pointing_hits(points: np.ndarray, boxes: np.ndarray, tolerance: float) -> np.ndarray:
    """points [..., 2] (x, y) and boxes [..., 4] (x0, y0, x1, y1), all in [0, 1] of the frame -> 1 where the point
    lies in the box, or within `tolerance` of it along each axis (a heatmap of patches points at a patch centre:
    half a patch's side counts a patch that overlaps the box)."""
    points, boxes = np.asarray(points, np.float64), np.asarray(boxes, np.float64)
    dx = np.maximum(np.maximum(boxes[..., 0] - points[..., 0], points[..., 0] - boxes[..., 2]), 0)
    dy = np.maximum(np.maximum(boxes[..., 1] - points[..., 1], points[..., 1] - boxes[..., 3]), 0)
    return (np.maximum(dx, dy) <= tolerance + 1e-9).astype(np.float64)


def localization_metrics(
    points: np.ndarray, boxes: np.ndarray, tolerance: float, *, prefix: str = "localization"
) -> dict[str, float]:
    """The pointing game: points [N, T, 2] (each frame's heatmap maximum) against the objects' boxes [N, T, K, 4]
    (the sounding object first) -> over every frame:
      f"{prefix}/pointing_accuracy"      the point is on the sounding object;
      f"{prefix}/silent_object_accuracy" ... on the silent one (K > 1) instead: a heatmap that finds objects but
                                         not which one sounds scores both alike;
      f"{prefix}/centre_prior_accuracy"  the frame's centre is on the sounding object: the baseline to beat."""
    points, boxes = np.asarray(points), np.asarray(boxes)
    centre = np.full(points.shape, 0.5)
    out = {
        f"{prefix}/pointing_accuracy": pointing_hits(points, boxes[..., 0, :], tolerance),
        f"{prefix}/centre_prior_accuracy": pointing_hits(centre, boxes[..., 0, :], tolerance),
    }
    if boxes.shape[-2] > 1:
        out[f"{prefix}/silent_object_accuracy"] = pointing_hits(points, boxes[..., 1, :], tolerance)
    return {k: float(v.mean()) if v.size else 0.0 for k, v in out.items()}
