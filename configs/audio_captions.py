"""Spoken descriptions of two `shapes` objects (eSpeak NG, built offline): audio-text retrieval or transcription.

"a large blue cross at the top and a small red square at the left", 3-7 s of speech. Retrieval is CLAP's recipe (a
CLIP whose image side is an audio tower); transcription is the captioner over an audio tower, scored by word error
rate. The test split is spoken by voices training never hears.

    mmjax train --config configs/audio_captions.py --workdir runs/clap                        # retrieval
    mmjax train --config configs/audio_captions.py:task=transcription --workdir runs/asr      # transcription
    mmjax train --config configs/audio_captions.py:encoder=cnn --workdir runs/clap_cnn        # another tower
    mmjax train --config configs/audio_captions.py:tiny --workdir /tmp/a
"""

import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from common import TINY_AUDIO, audio_tower, deep_update, parse_arg, tiny_schedule  # noqa: E402

VARIANTS = {
    "tiny": "seconds on a CPU (64 utterances, small towers)",
    "task=retrieval|transcription": "audio-text contrastive training (default) or transcription",
    "encoder=ast|cnn|whisper": "the audio tower",
}
ARGS = {"task": "retrieval", "encoder": "ast"}
SAMPLES = 112_000  # 7 s at 16 kHz: the longest description, spoken slowly, is 6.7 s


def get_config(arg=None):
    a = parse_arg(arg, **ARGS)
    c = {
        "data": {
            "source": "spoken_captions",
            "audio_samples": SAMPLES,
            "tokenizer": {"kind": "word", "path": "shapes", "max_length": 24},
        },
        "optim": {"lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.05},
        "batch_size": 64,
        "total_steps": 2000,
        "log_every": 50,
        "eval_every": 500,
        "checkpoint_every": 500,
    }
    if a["task"] == "retrieval":
        c["task"] = "contrastive"
        c["model"] = {
            "image": audio_tower(a["encoder"], SAMPLES, patch_stride=16),
            "text": {"name": "clip_text", "width": 128, "depth": 2, "num_heads": 4, "max_length": 24},
            "embed_dim": 128,
        }
        c["evals"] = {"retrieval": {"split": "test"}}
    elif a["task"] == "transcription":
        c["task"] = "captioning"
        c["model"] = {
            "image": audio_tower(a["encoder"], SAMPLES, patch_stride=16),
            "width": 128,
            "num_layers": 2,
            "num_heads": 4,
        }
        c["evals"] = {"captioning": {"split": "test"}}
    else:
        raise ValueError(f"task must be 'retrieval' or 'transcription', got {a['task']!r}")
    if a["tiny"]:
        deep_update(
            c,
            {
                "data": {"spoken_captions": {"num_train": 64, "num_validation": 16, "num_test": 16}},
                "model": {"image": TINY_AUDIO[a["encoder"]]},
            },
        )
        if a["task"] == "retrieval":
            deep_update(c, {"model": {"text": {"width": 32, "depth": 1, "num_heads": 2}, "embed_dim": 16}})
        else:
            deep_update(c, {"model": {"width": 32, "num_layers": 1, "num_heads": 2}})
        tiny_schedule(c)
    return ml_collections.ConfigDict(c)
