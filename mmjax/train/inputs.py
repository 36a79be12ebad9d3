"""What the trainer hands the data floor: the pipeline's view of the config, and the dataset checked and
described once before anything compiles."""

from __future__ import annotations

import ml_collections

from mmjax import data as mmdata
from mmjax.config import ConfigError


def data_config(config: ml_collections.ConfigDict, **overrides) -> ml_collections.ConfigDict:
    """config.data with the experiment's global batch size and seed (what `build_pipeline` reads), plus overrides
    (an evaluator's batch size, captions='all')."""
    cfg = ml_collections.ConfigDict({**config.data.to_dict(), "batch_size": config.batch_size, "seed": config.seed})
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def check_splits(config: ml_collections.ConfigDict, splits: tuple[str, ...] | None) -> None:
    """Every split the run reads exists: training's `train` and each evaluator's; the error lists those there are."""
    if splits is None:  # not knowable before preparing (a tfds name that is not prepared fails on opening)
        return
    needed = [("data", "train")] + [(f"evals.{name}.split", e.split) for name, e in config.evals.items()]
    for key, split in needed:
        if mmdata.split_name(split) not in splits:
            what = f"the {config.data.source!r} dataset" + (f" at {config.data.path}" if config.data.path else "")
            subject = "training reads split 'train'" if key == "data" else f"config key {key!r} is {split!r}"
            raise ConfigError(f"{subject}, a split {what} does not have; its splits are {list(splits)}")


def prepare_data(config: ml_collections.ConfigDict) -> mmdata.DatasetInfo:
    """Check the splits (cheaply, before preparing), then prepare the dataset once and describe it."""
    cfg = data_config(config)
    try:
        check_splits(config, mmdata.available_splits(cfg))
        return mmdata.dataset_info(cfg)
    except (ValueError, FileNotFoundError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e).splitlines()[0]) from e
