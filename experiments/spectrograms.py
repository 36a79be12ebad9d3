"""Pictures of the spoken data as the audio towers see it: the log-mel spectrogram their `frontend` computes.

    .venv/bin/python experiments/spectrograms.py experiments/figures/spectrograms.png

Four utterances from `mmjax.data.spoken`: one digit and one object description spoken by a training voice, the
same by a held-out (test-split) voice. Each panel is the AST preset at 64 mel bins (what configs/audio_*.py feed
their towers), time left to right, low frequencies at the bottom. Synthesis is local (eSpeak NG); a few seconds.
"""

from __future__ import annotations

import dataclasses
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mmjax.data import spoken  # noqa: E402
from mmjax.encoders import AST_FBANK, log_mel  # noqa: E402

FRONTEND = dataclasses.replace(AST_FBANK, mel_bins=64, num_frames=None)


def examples() -> list[tuple[str, dict]]:
    """(panel title, utterance) for a digit and a description, by a training and a held-out voice."""
    out = []
    for split in ("train", "test"):
        who = "training voice" if split == "train" else "held-out voice"
        digit = spoken.spoken_digit(0, split, 7)
        phrase = spoken.spoken_caption(0, split, 3)
        out.append((f"'{digit['text']}' ({who}: {digit['voice']})", digit))
        out.append((f"'{phrase['text']}' ({who}: {phrase['voice']})", phrase))
    return out


def main(path: str) -> None:
    panels = examples()
    fig, axes = plt.subplots(2, 2, figsize=(12, 6), gridspec_kw={"width_ratios": [1, 3]})
    for ax, (title, utterance) in zip(axes.ravel(), panels):
        features, _ = log_mel(utterance["audio"][None], FRONTEND)
        image = np.asarray(features[0]).T  # [mels, frames]: frequency up, time across
        ax.imshow(image, origin="lower", aspect="auto", cmap="magma", extent=(0, image.shape[1] / 100, 0, 64))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("seconds")
        ax.set_ylabel("mel bin")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "experiments/figures/spectrograms.png")
