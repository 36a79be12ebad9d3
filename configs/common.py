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
    c.eval_every = 1000
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
    c.seed = 0
    c.eval = ml_collections.ConfigDict({"split": "validation", "batch_size": 256})
    c.init_from = ml_collections.ConfigDict({"kind": "", "path": "", "source": "", "target": ""})
    c.on_nonfinite = "error"  # or "skip": drop the update and count it
    c.profile_steps = ()  # (first, last): write a JAX profiler trace for these steps into workdir/profile
    c.progress = True
    return c
