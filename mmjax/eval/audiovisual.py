"""Audio-visual correspondence from embeddings: how often the true soundtrack outscores each kind of negative."""

from __future__ import annotations

import numpy as np


def correspondence_metrics(
    video: np.ndarray, audio: np.ndarray, shifted: np.ndarray, *, prefix: str = "correspondence"
) -> dict[str, float]:
    """video, audio, shifted: [N, E] embeddings (row i: clip i, its soundtrack, that soundtrack shifted in time).

    A (positive, negative) pair is right when the clip scores its own soundtrack above the negative (cosine):
      f"{prefix}/accuracy/other_clip"   over every pair (clip i, soundtrack j != i) of the split: the mean over
                                        clips of the fraction of other soundtracks scored below its own;
      f"{prefix}/accuracy/time_shift"   over every clip, against its own soundtrack shifted in time.
    Both are functions of the whole split alone, not of how it was batched. One clip: other_clip is 0."""
    video, audio, shifted = (np.asarray(x, np.float64) for x in (video, audio, shifted))
    scores = video @ audio.T  # [N, N]
    positive = np.diagonal(scores)
    n = len(scores)
    beaten = (positive[:, None] > scores).sum(1)  # the diagonal never counts: a score is not above itself
    other = float((beaten / (n - 1)).mean()) if n > 1 else 0.0
    shift = float((positive > (video * shifted).sum(1)).mean()) if n else 0.0
    return {f"{prefix}/accuracy/other_clip": other, f"{prefix}/accuracy/time_shift": shift}
