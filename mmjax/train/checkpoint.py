"""Orbax checkpoints of (train state, data-iterator state, config), saved asynchronously; the newest complete one
is restored on rerun.

A checkpoint directory is only renamed to its final `<step>` name once every file is written (Orbax's atomic
finalization), so a run killed mid-save leaves a temporary directory that `latest_step` never returns.
"""

from __future__ import annotations

import logging
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

logger = logging.getLogger(__name__)


class Checkpointer:
    """Save and restore `state` (a pytree of jax.Arrays), `data` (a grain iterator) and `config` (a dict)."""

    def __init__(self, directory: str | epath.Path, *, keep: int = 3, async_save: bool = True):
        directory = epath.Path(directory)
        self.directory = str(directory if "://" in str(directory) else directory.resolve())
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data", "config"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: Any, config: dict, *, force: bool = False) -> bool:
        """Start an asynchronous save of `step`; returns whether one was started."""
        items = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(config)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def restore(self, step: int, abstract_state: Any, data_iterator: Any = None) -> Any:
        """Restore `step` into the shapes and shardings of `abstract_state`; the data iterator in place.

        `abstract_state` holds jax.ShapeDtypeStruct leaves with shardings, so each array is read directly into
        its place on the current mesh, whatever mesh or process count wrote it. The data iterator's state is
        per process (each reads its own shard of the records), so it is only restored with the process count
        that saved it; with another count the pipeline starts over, with a warning.
        """
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None and self._has_data_state(step):
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def _has_data_state(self, step: int) -> bool:
        """Whether `step` holds a data-iterator state for this process under the current process count."""
        # grain names the file process_<index>-of-<count>.json (grain 0.2 checkpoint handler).
        data = epath.Path(self.directory) / str(step) / "data"
        if (data / f"process_{jax.process_index()}-of-{jax.process_count()}.json").exists():
            return True
        saved = sorted(p.name for p in data.glob("process_*.json")) if data.exists() else []
        logger.warning(
            "step %d: no data-iterator state for process %d of %d (saved: %s); the input pipeline starts from its "
            "beginning, so examples seen before the checkpoint may be seen again",
            step,
            jax.process_index(),
            jax.process_count(),
            ", ".join(saved) or "none",
        )
        return False

    def restore_params(self, step: int | None = None) -> Any:
        """Only the parameters of a checkpoint (for `init_from`), as jax.Arrays placed as they were saved."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
        restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
        return restored["state"]["params"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
