"""Video on `moving_shapes`: clips of 8 frames where a shape moves, grows, shrinks, bounces or stays.

    mmjax train --config configs/video_shapes.py --workdir runs/video            # action recognition (8 motions)
    mmjax train --config configs/video_shapes.py:task=retrieval --workdir runs/vr  # video-text contrastive
    mmjax train --config configs/video_shapes.py:tiny --workdir /tmp/v

The tower is a `frame_vit` (an image ViT on every frame, then a temporal transformer over the frames, CLIP4Clip's
recipe); `:temporal=mean` averages the frames instead, which cannot see their order: six of the eight motions
are each other's time reversal (left/right, up/down, grows/shrinks), so that model is the control that proves the
other uses time.
"""

import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from common import deep_update, parse_arg, tiny_schedule  # noqa: E402

VARIANTS = {
    "tiny": "seconds on a CPU (64 clips, small towers)",
    "task=classification|retrieval": "action recognition (default) or video-text contrastive training",
    "temporal=transformer|mean": "frames through a temporal transformer (default) or averaged (order-blind control)",
}
ARGS = {"task": "classification", "temporal": "transformer"}


def get_config(arg=None):
    a = parse_arg(arg, **ARGS)
    if a["task"] not in ("classification", "retrieval"):
        raise ValueError(f"task must be 'classification' or 'retrieval', got {a['task']!r}")
    if a["temporal"] not in ("transformer", "mean"):
        raise ValueError(f"temporal must be 'transformer' or 'mean', got {a['temporal']!r}")
    video = {
        "name": "frame_vit",
        "width": 128,
        "depth": 4,
        "num_heads": 4,
        "patch_size": 8,  # 4x4 patches of a 32 px frame: a 4 px object still fills one
        "image_size": 32,
        "num_frames": 8,
        "temporal_depth": 2 if a["temporal"] == "transformer" else 0,
    }
    c = {
        "data": {
            "source": "moving_shapes",
            "random_crop": False,  # a crop would cut the motion out of the frame
            "tokenizer": {"kind": "word", "path": "shapes", "max_length": 24},
        },
        "optim": {"lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.05},
        "batch_size": 64,
        "total_steps": 2000,
        "log_every": 50,
        "eval_every": 500,
        "checkpoint_every": 500,
    }
    if a["task"] == "classification":
        c["task"] = "classification"
        c["model"] = {"kind": "tower", "image": video, "num_classes": 8}
        c["evals"] = {"classification": {"split": "test"}}
    else:
        c["task"] = "contrastive"
        c["model"] = {
            "image": video,
            "text": {"name": "clip_text", "width": 128, "depth": 2, "num_heads": 4, "max_length": 24},
            "embed_dim": 128,
        }
        c["evals"] = {"retrieval": {"split": "test"}}
    if a["tiny"]:
        deep_update(
            c,
            {
                "data": {
                    "moving_shapes": {"num_train": 64, "num_validation": 16, "num_test": 16, "num_compositional": 16}
                },
                "model": {
                    "image": {
                        "width": 32,
                        "depth": 1,
                        "num_heads": 2,
                        "temporal_depth": min(1, video["temporal_depth"]),
                    }
                },
            },
        )
        if a["task"] == "retrieval":
            deep_update(c, {"model": {"text": {"width": 32, "depth": 1, "num_heads": 2}, "embed_dim": 16}})
        tiny_schedule(c)
    return ml_collections.ConfigDict(c)
