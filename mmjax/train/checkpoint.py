"""Orbax checkpoints of (train state, data-iterator state, config), saved asynchronously; the newest complete one
is restored on rerun.

A checkpoint directory is only renamed to its final `<step>` name once every file is written (Orbax's atomic
finalization), so a run killed mid-save leaves a temporary directory that `latest_step` never returns.
"""

from __future__ import annotations

import json
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
        its place on the current mesh, whatever mesh or process count wrote it. The data iterator's state is its
        global position, the same in every process's file, so it too restores under any process count.
        """
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        data_state = self._data_state(step) if data_iterator is not None else None
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        if data_state is not None:
            data_iterator.set_state(data_state)
        return restored["state"]

    def _data_state(self, step: int) -> dict | None:
        """The data-iterator state saved with `step`: this process's file if the same process count wrote it,
        else any (grain names them process_<index>-of-<count>.json; their contents are equal)."""
        data = epath.Path(self.directory) / str(step) / "data"
        own = data / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        saved = [own] if own.exists() else sorted(data.glob("process_*.json")) if data.exists() else []
        if not saved:
            logger.warning(
                "step %d: no data-iterator state; the input pipeline starts from its beginning, so examples seen "
                "before the checkpoint may be seen again",
                step,
            )
            return None
        return json.loads(saved[0].read_text())

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
