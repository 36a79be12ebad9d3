"""CLIP on the `shapes` dataset: the demo. `configs/clip_shapes.py:tiny` trains in seconds (tests, smoke checks).

mmjax train --config configs/clip_shapes.py --workdir runs/clip
mmjax train --config configs/clip_shapes.py:tiny --workdir /tmp/t --config.total_steps=3
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # config files may be loaded from any working directory

from common import base_config  # noqa: E402


def get_config(arg=None):
    c = base_config()
    c.task = "contrastive"
    c.model.update(
        {
            "image": {
                "name": "vit",
                "width": 192,
                "depth": 6,
                "num_heads": 3,
                "patch_size": 8,
                "image_size": 64,
                "pre_norm": True,
                "pooling": "tok",
            },
            "text": {"name": "clip_text", "width": 192, "depth": 4, "num_heads": 3, "max_length": 32},
            "embed_dim": 128,
            "loss": "softmax",  # "sigmoid" for SigLIP
        }
    )
    c.data.tokenizer.max_length = 32
    c.data.image_size = 64
    c.optim.update({"lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.1, "b2": 0.98, "eps": 1e-6})
    c.batch_size = 256
    c.total_steps = 2000
    c.eval.split = "test"
    if arg == "tiny":
        c.model.image.update({"width": 32, "depth": 1, "num_heads": 2, "patch_size": 8, "image_size": 32})
        c.model.text.update({"width": 32, "depth": 1, "num_heads": 2, "max_length": 16, "vocab_size": 49408})
        c.model.embed_dim = 16
        c.data.image_size = 32
        c.data.tokenizer.max_length = 16
        c.data.shapes.update(
            {"image_size": 32, "num_train": 64, "num_validation": 16, "num_test": 16, "num_compositional": 16}
        )
        c.optim.warmup_steps = 1
        c.batch_size = 16
        c.eval.batch_size = 16
        c.total_steps = 5
        c.log_every = 1
        c.eval_every = 5
        c.checkpoint_every = 5
    elif arg not in (None, ""):
        raise ValueError(f"configs/clip_shapes.py has variants '' and 'tiny', got {arg!r}")
    return c
