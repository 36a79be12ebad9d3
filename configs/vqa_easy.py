"""VisualBERT on easy-VQA (PyPI easy-vqa: 64x64 images of one shape, 13 answers), grid features from a ViT.

    mmjax train --config configs/vqa_easy.py --workdir runs/vqa_easy
    mmjax train --config configs/vqa_easy.py:tiny --workdir /tmp/e

The model, tokenizer and optimizer are `vqa_shapes.py`'s (grid features: easy-VQA records no boxes, so there are
no region features); accuracy is reported per question type (shape, color, yes/no) on the 9,673 test questions.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import vqa_shapes  # noqa: E402
from common import parse_arg  # noqa: E402

VARIANTS = {"tiny": "seconds on a CPU (64 records per split)"}


def get_config(arg=None):
    a = parse_arg(arg)
    c = vqa_shapes.get_config("tiny" if a["tiny"] else None)
    c.data.source = "easy_vqa"
    c.data.max_regions = 0
    # easy-VQA's questions use words outside the shapes word list: CLIP's BPE covers any text
    c.data.tokenizer = {"kind": "clip", "max_length": 24}
    del c.model.text["vocab_size"]  # the shapes word list's size: CLIP's vocabulary follows from the tokenizer
    if a["tiny"]:
        c.data.limit = 64
    else:
        c.total_steps = 1000
    return c
