"""CLIP on the `shapes` dataset: the demo (`make demo`). `configs/clip_shapes.py:tiny` trains in seconds.

    mmjax train --config configs/clip_shapes.py --workdir runs/clip
    mmjax train --config configs/clip_shapes.py:tiny --workdir /tmp/t --config.total_steps=3
    mmjax train --config configs/clip_shapes.py:siglip --workdir runs/siglip      # sigmoid loss + bias

Sized for a 2-core CPU, the slowest seen included: 64x64 images in 16x16 patches (17 tokens), a 2-layer text
transformer over 64 tokens (a five-object caption takes up to 60), ~1.3M parameters outside the 49k-token
embedding; 480 steps of 128 pairs are ~6 passes over the 10,000 training scenes. 8x8 patches and 3 text layers
reach a higher recall (0.78 vs 0.72 text->image R@1) at 2.3x the step time, which on a 2-core AMD EPYC VM
(2 s a step) no longer fits the demo's 10 minutes (experiments/README.md).
"""

import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # config files may be loaded from any working directory

from common import deep_update, parse_arg, tiny_shapes  # noqa: E402

VARIANTS = {
    "tiny": "seconds on a CPU (every config has it; combine with others: tiny,siglip)",
    "siglip": "sigmoid loss with a learned bias (SigLIP) instead of softmax",
    "b16": "CLIP ViT-B/16 at 224 px with a 512 x 12 text tower, bf16 compute: the accelerator benchmark",
}


def get_config(arg=None):
    a = parse_arg(arg, siglip=False, b16=False)
    c = {
        "task": "contrastive",
        "model": {
            "image": {
                "name": "vit",
                "width": 128,
                "depth": 4,
                "num_heads": 4,
                "image_size": 64,  # 16x16 patches (ViT's default): 17 tokens
                "pre_norm": True,
            },
            # 64 tokens: a five-object caption takes up to 60; the tokenizer's length follows the tower's
            "text": {"name": "clip_text", "width": 128, "depth": 2, "num_heads": 4, "max_length": 64},
            "embed_dim": 128,
            "loss": "sigmoid" if a["siglip"] else "softmax",
        },
        # captions name positions ("at the top left"); a crop would make them wrong
        "data": {"random_crop": False},
        "optim": {"warmup_steps": 100, "weight_decay": 0.1, "b2": 0.98, "eps": 1e-6},
        "batch_size": 128,
        "total_steps": 480,  # training fits the demo's 10-minute budget on 2 CPU cores (experiments/README.md)
        "log_every": 20,
        "eval_every": 480,
        "checkpoint_every": 240,
        "evals": {"retrieval": {"split": "test"}},
    }
    if a["b16"]:
        # open_clip's ViT-B-16: the towers whose published throughput and MFU the GPU benchmark compares against
        c["model"]["image"] = {"name": "vit", "variant": "B/16", "image_size": 224, "pre_norm": True}
        deep_update(
            c,
            {
                "model": {
                    "text": {"width": 512, "depth": 12, "num_heads": 8, "max_length": 77},
                    "embed_dim": 512,
                    "dtype": "bfloat16",
                },
                "batch_size": 256,
            },
        )
    if a["tiny"]:
        tiny_shapes(c)
        # 8x8 patches keep 16 image tokens at 32px, so both towers do comparable work (LiT's FLOP test relies on it)
        deep_update(
            c,
            {
                "model": {
                    "image": {"width": 32, "depth": 1, "num_heads": 2, "image_size": 32, "patch_size": 8},
                    "text": {"width": 32, "depth": 1, "num_heads": 2, "max_length": 16},
                    "embed_dim": 16,
                },
                "total_steps": 5,
                "eval_every": 5,
                "checkpoint_every": 5,
            },
        )
    return ml_collections.ConfigDict(c)
