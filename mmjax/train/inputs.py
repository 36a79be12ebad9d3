"""What the trainer hands the data floor: the pipeline's view of the config, and the dataset checked and
described once before anything compiles."""

from __future__ import annotations

import jax
import ml_collections
from jax.experimental import multihost_utils

from mmjax import data as mmdata
from mmjax.config import ConfigError

# The DatasetInfo a run's task was built with, written beside its checkpoints: the model can be rebuilt from the
# workdir alone (mmjax.predict), without the dataset.
DATASET_INFO = "dataset_info.json"


def data_config(config: ml_collections.ConfigDict, **overrides) -> ml_collections.ConfigDict:
    """config.data with the experiment's global batch size and seed (what `build_pipeline` reads), plus overrides
    (an evaluator's batch size, captions='all')."""
    cfg = ml_collections.ConfigDict({**config.data.to_dict(), "batch_size": config.batch_size, "seed": config.seed})
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def check_splits(
    config: ml_collections.ConfigDict, splits: tuple[str, ...] | None, extra: dict[str, str] | None = None
) -> None:
    """Every split the run reads exists: training's `train`, each evaluator's and `extra` ({what: split}); the
    error lists those there are."""
    if splits is None:  # not knowable before preparing (a tfds name that is not prepared fails on opening)
        return
    needed = {
        "training reads split": "train",
        **{f"config key 'evals.{n}.split' is": e.split for n, e in config.evals.items()},
    }
    needed.update({f"{k} is": v for k, v in (extra or {}).items()})
    for subject, split in needed.items():
        if mmdata.split_name(split) not in splits:
            what = f"the {config.data.source!r} dataset" + (f" at {config.data.path}" if config.data.path else "")
            raise ConfigError(f"{subject} {split!r}, a split {what} does not have; its splits are {list(splits)}")


def prepare_data(config: ml_collections.ConfigDict) -> mmdata.DatasetInfo:
    """Check the splits (cheaply, before preparing), then prepare the dataset once and describe it.

    Mistakes a user makes in naming the data (a jsonl folder that is not there, a split it lacks, a packaged
    dataset that is not installed) are ConfigErrors; anything else that fails while preparing is raised as is."""
    cfg = data_config(config)
    try:
        splits = mmdata.available_splits(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    check_splits(config, splits)
    try:
        # Prepared once per run: process 0 first, the others after it, reusing its files (on a shared disk or
        # bucket; each host prepares its own local copy otherwise). builders.prepare's file lock covers runs that
        # share a local data_dir.
        if jax.process_index() != 0:
            multihost_utils.sync_global_devices("mmjax: dataset prepared")
        info = mmdata.dataset_info(cfg)
        if jax.process_index() == 0 and jax.process_count() > 1:
            multihost_utils.sync_global_devices("mmjax: dataset prepared")
        return info
    except FileNotFoundError as e:
        raise ConfigError(str(e).splitlines()[0]) from e
