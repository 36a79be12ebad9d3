"""Resume guards: a workdir's checkpoint is restored only into a run whose config still fits it.

Before restoring, the config the checkpoint was saved with is compared with the current one. A change that alters
the shapes of the parameters or of the optimizer state fails in one line listing the keys that differ (and says
how to start from those weights instead). Other changes are allowed and logged: quietly those that only schedule
the run (`SCHEDULE_KEYS`), with a warning those that change what it learns (learning rate, data, seed).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections

from mmjax import sharding
from mmjax.config import ConfigError
from mmjax.data import DatasetInfo
from mmjax.train.optim import build_optimizer
from mmjax.train.tasks import build_task

logger = logging.getLogger(__name__)

# Keys that only say how long, how often, where and how fast: changing them on resume is what users do.
SCHEDULE_KEYS = (
    "total_steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "evals",
    "progress",
    "profile_steps",
    "config_spec",
    "on_nonfinite",
    "init_from",
    "mesh",
    "dcn_mesh",
    "sharding",
    "data.data_dir",
    "data.read_threads",
    "data.worker_count",
    "data.worker_buffer_size",
)


class ResumeMismatch(ConfigError):
    """The workdir's checkpoint does not fit the current config."""


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = list(value) if isinstance(value, tuple) else value
    return out


def changed_keys(saved: Mapping, current: Mapping) -> dict[str, tuple[Any, Any]]:
    """{key: (saved value, current value)} for every leaf key that differs (missing on one side: None)."""
    a, b = flatten(saved), flatten(current)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def state_shapes(config: ml_collections.ConfigDict, info: DatasetInfo) -> dict[str, tuple]:
    """{path: shape} of the parameters and optimizer state `config` trains (no mesh, nothing allocated)."""
    task = build_task(config, info)
    params = sharding.unbox(jax.eval_shape(task.init, jax.random.key(0), task.init_batch()))
    tx = build_optimizer(config.optim, params, config.total_steps).tx
    tree = {"params": params, "opt_state": jax.eval_shape(tx.init, params)}
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in leaves}


def _schedule_only(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in SCHEDULE_KEYS)


def check_resume(saved: Mapping, config: ml_collections.ConfigDict, info: DatasetInfo, workdir: str, step: int):
    """Raise ResumeMismatch if the checkpoint saved with `saved` cannot be restored under `config`; log changes."""
    changes = changed_keys(saved, config.to_dict())
    if not changes:
        return
    advice = (
        f"Train in a new --workdir, or start from its weights there with --config.init_from.kind=mmjax "
        f"--config.init_from.path={workdir}"
    )
    _check_shapes(saved, config, info, changes, workdir, step, advice)
    relevant = [k for k in changes if not _schedule_only(k)]
    if relevant:
        logger.warning("resuming step %d with changed keys that alter training: %s", step, _listed(changes, relevant))
    schedule = [k for k in changes if _schedule_only(k)]
    if schedule:
        logger.info("resuming step %d with changed keys: %s", step, _listed(changes, schedule))


def check_readable(saved: Mapping, config: ml_collections.ConfigDict, info: DatasetInfo, workdir: str, step: int):
    """For a reader of a run (`mmjax eval`, a report): ResumeMismatch naming the changed keys when the checkpoint's
    arrays do not fit `config`'s model, rather than a failed read that looks like a damaged checkpoint."""
    changes = changed_keys(saved, config.to_dict())
    if changes:
        advice = f"Read it with the config it was saved with: mmjax eval --workdir {workdir} (no --config)"
        _check_shapes(saved, config, info, changes, workdir, step, advice)


def _listed(changes: Mapping, keys) -> str:
    return ", ".join(f"{k} ({changes[k][0]!r} -> {changes[k][1]!r})" for k in keys)


def _check_shapes(saved: Mapping, config, info: DatasetInfo, changes: Mapping, workdir: str, step: int, advice: str):
    relevant = [k for k in changes if not _schedule_only(k)]
    if not relevant:  # schedule keys leave every shape as it was: no model to build twice
        return
    try:
        before = state_shapes(ml_collections.ConfigDict(dict(saved)), info)
    except Exception as e:  # noqa: BLE001 - a config from another mmjax version may not build: compare keys only
        logger.warning("could not rebuild the model of the checkpoint's config (%s); comparing keys only", e)
        before = None
    now = state_shapes(config, info)
    if before != now and (before is not None or any(k.startswith(("model.", "optim.name")) for k in relevant)):
        moved = [p for p in sorted(set(before or {}) | set(now)) if (before or {}).get(p) != now.get(p)]
        moved.sort(key=lambda p: not p.startswith("['params']"))  # a parameter names the change best
        example = f" (e.g. {moved[0]}: {(before or {}).get(moved[0])} saved, {now.get(moved[0])} now)" if moved else ""
        raise ResumeMismatch(
            f"the checkpoint at step {step} in {workdir} does not fit this config{example}; keys changed since it "
            f"was saved: {_listed(changes, relevant)}. {advice}"
        )
