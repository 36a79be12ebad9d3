"""Video on `moving_shapes`: clips of 8 frames where a shape moves, grows, shrinks, bounces or stays.

    mmjax train --config configs/video_shapes.py --workdir runs/video            # action recognition (8 motions)
    mmjax train --config configs/video_shapes.py:task=retrieval --workdir runs/vr  # video-text contrastive, 4 frames
    mmjax train --config configs/video_shapes.py:task=captioning --workdir runs/vc  # describe the clip
    mmjax train --config configs/video_shapes.py:tiny --workdir /tmp/v

The tower is a `frame_vit` (an image ViT on every frame, then a temporal transformer over the frames, CLIP4Clip's
recipe); `:temporal=mean` averages the frames instead, which cannot see their order: six of the eight motions
are each other's time reversal (left/right, up/down, grows/shrinks), so that model is the control that proves the
other uses time. `:tower=` picks another video tower at a comparable size for 32 px, 8-frame clips: a tubelet
transformer (`video_vit`, `video_vit_factorised`, `video_vit_divided`; tubelets of 2 frames x 8 x 8 px) or a 3-D
CNN (`video_resnet`: R3D-18's layout at a quarter of its width; `--config.model.image.block=2plus1d` for R(2+1)D).
`task=captioning` puts the captioner's transformer decoder on the video tower (BLEU-4, CIDEr-D and WER against the
clip's 3 captions); `--config.data.frame_order=shuffle` (or `single`) trains and tests any of them on shuffled
frames (or one frame), the controls that show time is used.
"""

import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from common import deep_update, parse_arg, tiny_schedule, video_tower  # noqa: E402

VARIANTS = {
    "tiny": "seconds on a CPU (64 clips, small towers)",
    "task=classification|retrieval|captioning": "action recognition (default), video-text contrastive training "
    "or video captioning",
    "temporal=transformer|mean": "frames through a temporal transformer (default) or averaged (order-blind control)",
    "tower=frame_vit|video_vit|video_vit_factorised|video_vit_divided|video_resnet": "the video tower "
    "(default frame_vit; temporal= applies to it alone)",
}
ARGS = {"task": "classification", "temporal": "transformer", "tower": "frame_vit"}
TASKS = ("classification", "retrieval", "captioning")


def get_config(arg=None):
    a = parse_arg(arg, **ARGS)
    if a["task"] not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {a['task']!r}")
    if a["temporal"] not in ("transformer", "mean"):
        raise ValueError(f"temporal must be 'transformer' or 'mean', got {a['temporal']!r}")
    if a["tower"] != "frame_vit" and a["temporal"] != "transformer":
        raise ValueError(f"temporal={a['temporal']} is frame_vit's option; tower={a['tower']} has no frame mean")
    # Retrieval takes 4 of the 8 frames (they still show every motion and the second shape's arrival) and so
    # twice the clips a batch at the same step cost: a contrastive batch is its negatives.
    clip_frames = 4 if a["task"] == "retrieval" and not a["tiny"] else 8
    video = video_tower(a["tower"], tiny=a["tiny"], num_frames=clip_frames)
    if a["temporal"] == "mean":
        video["temporal_depth"] = 0
    c = {
        "data": {
            "source": "moving_shapes",
            "random_crop": False,  # a crop would cut the motion out of the frame
            # The 36 words of the moving_shapes captions: the shapes list lacks the motions ('moves', 'grows', 'then',
            # 'appears', ...), which retrieval must tell apart and a captioner must say.
            "tokenizer": {"kind": "word", "path": "moving_shapes", "max_length": 28},
        },
        "optim": {"lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.05},
        "batch_size": 64,
        "total_steps": 2000,
        "log_every": 50,
        "eval_every": 500,
        "checkpoint_every": 500,
    }
    if a["tower"] == "video_resnet":
        c["data"]["image_size"] = 32  # a CNN takes any frame size: the data states it
    if a["task"] == "classification":
        c["task"] = "classification"
        c["model"] = {"kind": "tower", "image": video, "num_classes": 8}
        c["evals"] = {"classification": {"split": "test"}}
    elif a["task"] == "retrieval":
        c["task"] = "contrastive"
        c["model"] = {
            "image": video,
            "text": {"name": "clip_text", "width": 128, "depth": 2, "num_heads": 4, "max_length": 28},
            "embed_dim": 128,
        }
        c["batch_size"], c["total_steps"] = 128, 3000  # R@1 0.767 at step 2,000 of these, 0.810 at step 3,000
        c["evals"] = {"retrieval": {"split": "test"}}
    else:
        c["task"] = "captioning"
        c["model"] = {"image": video, "width": 128, "num_layers": 2, "num_heads": 4}
        c["evals"] = {"captioning": {"split": "test"}}
    if a["tiny"]:
        deep_update(
            c,
            {
                "data": {
                    "moving_shapes": {"num_train": 64, "num_validation": 16, "num_test": 16, "num_compositional": 16}
                },
            },
        )
        if a["task"] == "retrieval":
            deep_update(c, {"model": {"text": {"width": 32, "depth": 1, "num_heads": 2}, "embed_dim": 16}})
        if a["task"] == "captioning":
            deep_update(c, {"model": {"width": 32, "num_layers": 1, "num_heads": 2}})
        tiny_schedule(c)
    return ml_collections.ConfigDict(c)
