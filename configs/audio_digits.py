"""Spoken digits (eSpeak NG, built offline): ten words, tested on voices training never hears.

    mmjax train --config configs/audio_digits.py --workdir runs/digits                  # AST (default)
    mmjax train --config configs/audio_digits.py:encoder=cnn --workdir runs/digits_cnn   # spectrogram CNN
    mmjax train --config configs/audio_digits.py:encoder=whisper --workdir runs/digits_w # Whisper-style encoder
    mmjax train --config configs/audio_digits.py:tiny --workdir /tmp/d

Batches carry 1 s waveforms (16,000 samples); the tower computes its log-mel spectrogram inside the model step
(`frontend`), so the data pipeline does no signal processing. Accuracy on the test split is on held-out voices.
"""

import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from common import TINY_AUDIO, audio_tower, deep_update, parse_arg, tiny_schedule  # noqa: E402

VARIANTS = {
    "tiny": "seconds on a CPU (64 utterances, small towers)",
    "encoder=ast|cnn|whisper": "the audio tower: spectrogram transformer (default), CNN or Whisper-style encoder",
}
ARGS = {"encoder": "ast"}
SAMPLES = 16_000  # 1 s at 16 kHz: every digit word fits


def get_config(arg=None):
    a = parse_arg(arg, **ARGS)
    c = {
        "task": "classification",
        "data": {
            "source": "spoken_digits",
            "audio_samples": SAMPLES,
            "tokenizer": {"max_length": 8},  # the digit's word rides along; the tower model reads no text
        },
        "model": {"kind": "tower", "image": audio_tower(a["encoder"], SAMPLES), "num_classes": 10},
        "optim": {"lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.05},
        "batch_size": 64,
        "total_steps": 1000,
        "log_every": 50,
        "eval_every": 500,
        "checkpoint_every": 500,
        "evals": {"classification": {"split": "test"}},
    }
    if a["tiny"]:
        deep_update(
            c,
            {
                "data": {"spoken_digits": {"num_train": 64, "num_validation": 16, "num_test": 16}},
                "model": {"image": TINY_AUDIO[a["encoder"]]},
            },
        )
        tiny_schedule(c)
    return ml_collections.ConfigDict(c)
