"""Predictions from a trained model on your own images: zero-shot classes, image-text ranking, answers, captions.

    from mmjax.predict import Predictor
    p = Predictor.from_workdir("runs/clip")              # a training workdir: its newest intact checkpoint
    p = Predictor.from_pretrained("path/to/hf-clip")     # or a Hugging Face CLIP directory
    probs = p.zero_shot("photos/", ["red circle", "blue square"])   # [N, C], each row sums to 1

`predictor.py` has the methods, `loading.py` reads workdirs and Hugging Face directories, `images.py` turns files
and arrays into model inputs as evaluation does, `command.py` is `mmjax predict`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmjax.predict.images import PredictError
    from mmjax.predict.predictor import Predictor, Ranking

__all__ = ["PredictError", "Predictor", "Ranking"]

_WHERE = {
    "PredictError": "mmjax.predict.images",
    "Predictor": "mmjax.predict.predictor",
    "Ranking": "mmjax.predict.predictor",
}


def __getattr__(name: str):
    # Imported on first use: `mmjax.cli` reads this package's argument definitions (command.py) on every command,
    # and should not pay for JAX models and checkpointing to print `mmjax --help`.
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'mmjax.predict' has no attribute {name!r}")
