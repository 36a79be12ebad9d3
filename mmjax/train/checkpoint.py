"""Orbax checkpoints of (train state, data-iterator state, config), saved asynchronously; the newest intact one
is restored on rerun.

A checkpoint directory is only renamed to its final `<step>` name once every file is written (Orbax's atomic
finalization), so a run killed mid-save leaves a temporary directory that `latest_step` never returns. A finished
step whose files were later damaged (missing, truncated, garbage) is reported in one warning and passed over for
the next older one (`restore_newest`); nothing is deleted. A save that fails (disk full, no permission) leaves the
checkpoints already there intact and raises `CheckpointSaveError` naming the step and the cause.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Callable
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

logger = logging.getLogger(__name__)


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written; the earlier ones are intact."""


class NoIntactCheckpoint(RuntimeError):
    """Every checkpoint of a workdir is damaged: rather than start over silently, the run stops."""


class NoCheckpoint(FileNotFoundError):
    """The checkpoint asked for is not there: a workdir not trained yet, or a step never saved (or not kept)."""


def _reason(error: BaseException, step_dir: str) -> str:
    """'<file>: <first line of the error>' for a failed restore, naming the file of the step when it can."""
    text = str(error).strip() or type(error).__name__
    match = re.search(re.escape(step_dir) + r"[^\s'\"]*", text)
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    where = match.group(0) if match else step_dir
    return f"{where}: {type(error).__name__}: {first[:300]}"


def _quiet_closed_loop_noise() -> None:
    """Drop the 'Event loop is closed' reports a failed restore leaves behind.

    Workaround (orbax-checkpoint 0.12.8 with tensorstore 0.1.86, 2026-11): when reading a damaged step fails,
    tensorstore's pending callbacks still post to the asyncio loop Orbax has already closed, and Python prints each
    as an unraisable RuntimeError with its traceback, long after the error was handled. They are harmless; every
    other unraisable error is still reported.
    """
    previous = sys.unraisablehook
    if getattr(previous, "mmjax_quiet", False):
        return

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value):
            return
        previous(unraisable)

    hook.mmjax_quiet = True
    sys.unraisablehook = hook


ITEMS = ("state", "data", "config")


class Checkpointer:
    """Save and restore `state` (a pytree of jax.Arrays), `data` (a grain iterator) and `config` (a dict)."""

    def __init__(self, directory: str | epath.Path, *, keep: int = 3, async_save: bool = True, read_only=False):
        """`read_only`: for a reader of a run (`mmjax eval`, a report), which may be training or on storage it may
        not write: nothing is created, and damaged steps are passed over without being set aside."""
        directory = epath.Path(directory)
        self.directory = str(directory if "://" in str(directory) else directory.resolve())
        self.read_only = read_only
        self._pending: int | None = None  # the step of the save in flight
        if read_only:
            if not directory.is_dir():
                raise no_checkpoint(self.directory)
            options = ocp.CheckpointManagerOptions(read_only=True, create=False)
            self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
            return
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
        try:  # not a directory, no permission, a read-only file system: found now, not after the first steps
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".write-test-{jax.process_index()}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise CheckpointSaveError(f"cannot keep checkpoints in {self.directory}: {e}") from e
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: Any, config: dict, *, force: bool = False) -> bool:
        """Start an asynchronous save of `step`; returns whether one was started. An earlier save that failed in
        the background is reported here (or by `wait`/`close`) as a CheckpointSaveError."""
        items = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(config)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        with self._save_errors(self._pending):  # a background failure of the previous save surfaces here
            self.manager.wait_until_finished()
        with self._save_errors(step):
            started = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        self._pending = step if started else self._pending
        return started

    @contextlib.contextmanager
    def _save_errors(self, step: int | None):
        try:
            yield
        except Exception as e:  # noqa: BLE001 - whatever the storage raised, the user needs the step and the cause
            kept = [s for s in self._steps() if step is None or s < step]
            what = f"step {step}" if step is not None else "the last checkpoint"
            raise CheckpointSaveError(
                f"saving {what} to {self.directory} failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                f"); the checkpoints already there ({', '.join(map(str, kept)) or 'none'}) are intact"
            ) from e

    def _steps(self) -> list[int]:
        self.manager.reload()  # what is on disk now (another process may have written)
        return list(self.manager.all_steps())

    def require(self, step: int | None) -> int:
        """`step` (default: the newest) if it is on disk, else NoCheckpoint naming the steps that are."""
        steps = sorted(self._steps())
        if step is None and steps:
            return steps[-1]
        if step is None:
            raise no_checkpoint(self.directory)
        if step not in steps:
            raise NoCheckpoint(no_step(step, self.directory, steps))
        return step

    def saved_config(self, step: int) -> dict:
        """The config `step` was saved with (raises if its file is missing or unreadable)."""
        return json.loads((epath.Path(self.directory) / str(step) / "config" / "metadata").read_text())

    def restore_newest(
        self,
        abstract_state: Any,
        data_iterator: Any = None,
        check: Callable[[int, dict], None] | None = None,
        *,
        params_only: bool = False,
    ) -> tuple[int | None, Any]:
        """(step, state) of the newest checkpoint that reads back whole, or (None, None) when there is none;
        `params_only`: (step, params), read without the optimizer state (see `restore_params`).

        `check(step, saved_config)` runs before each restore: what it raises (a config that does not fit) propagates.
        A step whose files are missing, truncated or unreadable is reported in one warning and the next older one
        is tried; if every one is damaged, NoIntactCheckpoint is raised instead of starting over.
        """
        damaged: list[str] = []
        for step in sorted(self._steps(), reverse=True):
            step_dir = str(epath.Path(self.directory) / str(step))
            try:
                saved = self.saved_config(step)
            except (OSError, ValueError) as e:
                reason = _reason(e, step_dir)
            else:
                if check is not None:
                    check(step, saved)
                try:
                    if params_only:
                        state = self.restore_params(step, abstract_state.params)
                    else:
                        state = self.restore(step, abstract_state, data_iterator)
                except Exception as e:  # noqa: BLE001 - any failure to read a step back makes it unusable
                    _quiet_closed_loop_noise()
                    reason = _reason(e, step_dir)
                else:
                    if not self.read_only:
                        self._set_aside([int(d.split()[1]) for d in damaged])
                    return step, state
            damaged.append(f"step {step} ({reason})")
            logger.warning("checkpoint step %d is damaged and is passed over (nothing is deleted): %s", step, reason)
        if damaged:
            advice = "" if self.read_only else ". Move them away to start over, or train in another --workdir"
            raise NoIntactCheckpoint(f"no intact checkpoint in {self.directory}: {'; '.join(damaged)}{advice}")
        return None, None

    def restore(self, step: int, abstract_state: Any, data_iterator: Any = None) -> Any:
        """Restore `step` into the shapes and shardings of `abstract_state`; the data iterator in place.

        `abstract_state` holds jax.ShapeDtypeStruct leaves with shardings, so each array is read directly into
        its place on the current mesh, whatever mesh or process count wrote it. The data iterator's state is its
        global position, the same in every process's file, so it too restores under any process count.
        """
        step = self.require(step)
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

    def restore_params(self, step: int | None = None, abstract_params: Any = None) -> Any:
        """Only the parameters of a checkpoint (default: the newest). Into the shapes and shardings of
        `abstract_params` when given, read alone: the optimizer state (twice their size under Adam) stays on disk,
        which is what lets a reader of a large model fit beside its data. Without it (`init_from`), as jax.Arrays
        placed as they were saved."""
        step = self.require(step)
        if abstract_params is None:
            restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
            return restored["state"]["params"]
        item = {"params": abstract_params}
        restore_args = ocp.checkpoint_utils.construct_restore_args(item)
        args = ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True)
        with ocp.PyTreeCheckpointer() as reader:  # the manager's handler for `state` restores whole trees only
            return reader.restore(epath.Path(self.directory) / str(step) / "state", args=args)["params"]

    def _set_aside(self, steps: list[int]) -> None:
        """Rename damaged steps newer than the one restored to `<step>.damaged`, kept for inspection: the resumed
        run saves those steps again, which Orbax would refuse (or skip) while the damaged ones hold the name."""
        if not steps:
            return
        if jax.process_index() == 0:
            for step in steps:
                src = epath.Path(self.directory) / str(step)
                dst = epath.Path(self.directory) / f"{step}.damaged"
                n = 1
                while dst.exists():
                    dst, n = epath.Path(self.directory) / f"{step}.damaged-{n}", n + 1
                src.rename(dst)
                logger.warning("moved the damaged checkpoint step %d to %s", step, dst)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("mmjax: damaged checkpoints set aside")
        self.manager.reload()

    def wait(self) -> None:
        with self._save_errors(self._pending):
            self.manager.wait_until_finished()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()


def no_checkpoint(directory) -> NoCheckpoint:
    return NoCheckpoint(f"no checkpoint in {directory}; train first")


def no_step(step: int, directory, steps) -> str:
    """How every reader says that `step` was not saved (or not kept), naming the steps that were."""
    return f"no checkpoint of step {step} in {directory} (there: {', '.join(map(str, sorted(steps))) or 'none'})"


def check_saved(workdir: str | epath.Path, step: int | None = None) -> list[int]:
    """The steps saved in a workdir, newest first, read from the directory alone (no Orbax, nothing built), so a
    command can refuse a workdir with no checkpoint, or without `step`, before any expensive work."""
    directory = epath.Path(workdir) / "checkpoints"
    found = directory.iterdir() if directory.exists() else []
    steps = sorted((int(p.name) for p in found if p.name.isdigit()), reverse=True)
    if not steps:
        raise no_checkpoint(directory)
    if step is not None and step not in steps:
        raise NoCheckpoint(no_step(step, directory, steps))
    return steps


def saved_run_config(workdir: str | epath.Path) -> dict:
    """The config a workdir's newest checkpoint was saved with (as `mmjax eval --workdir D` uses it)."""
    try:
        steps = check_saved(workdir)
    except NoCheckpoint as e:
        raise NoCheckpoint(f"{e}, or give --config") from None
    directory = epath.Path(workdir) / "checkpoints"
    for step in steps:
        try:
            return json.loads((directory / str(step) / "config" / "metadata").read_text())
        except (OSError, ValueError):
            logger.warning("checkpoint step %d has no readable config; trying an older one", step)
    raise NoIntactCheckpoint(f"no checkpoint in {directory} has a readable config; give --config")
