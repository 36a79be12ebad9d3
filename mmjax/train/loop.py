"""The training loop: config in, trained and checkpointed model out. Model-agnostic: the task does the rest.

Order of work: validate the config (no compilation yet) -> mesh -> task -> abstract sharded state ->
restore (newest complete checkpoint), or init (+ init_from) -> compile the step once -> loop, which only moves
batches in and metrics out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from mmjax import config as mmconfig
from mmjax import data as mmdata
from mmjax import distributed, sharding
from mmjax.layers.flops import function_flops
from mmjax.train import init_from as init_from_lib
from mmjax.train.checkpoint import Checkpointer, check_saved, no_checkpoint
from mmjax.train.evaluate import build_evaluators, run_evaluators
from mmjax.train.inputs import DATASET_INFO, check_splits, data_config, prepare_data
from mmjax.train.lock import WorkdirLock
from mmjax.train.metrics import MetricWriter, Progress, device_peak_flops, log_file
from mmjax.train.optim import build_optimizer
from mmjax.train.resume import check_readable, check_resume
from mmjax.train.state import TrainState
from mmjax.train.step import compiler_options, make_train_step, stop_frozen
from mmjax.train.tasks import Task, build_task, tower_from_config

logger = logging.getLogger(__name__)


class Setup:
    """Everything a run needs before its first step: mesh, dataset info, task, evaluators, optimizer, state
    layout, step. Every check that needs no compilation has run when this returns (ConfigError, one line)."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        devices: Sequence[jax.Device] | None = None,
        *,
        info: mmdata.DatasetInfo | None = None,
    ):
        """`devices`: the devices the mesh spans (default: all of them). `info`: the dataset's description
        (default: prepare the dataset if needed and read it; tests pass one to skip that)."""
        self.devices = list(devices) if devices is not None else jax.devices()
        mmconfig.validate(config, len(self.devices))
        self.config = config
        # config.dcn_mesh (multi-slice TPU only) splits mesh axes across slices; without it the mesh is one slice's.
        with _config_errors("dcn_mesh"):
            self.mesh = distributed.make_mesh(config.mesh.to_dict(), self.devices, config.dcn_mesh)
        self.rules = sharding.get_rules(config.sharding).for_mesh(self.mesh)
        self.info = info if info is not None else prepare_data(config)
        self.task: Task = build_task(config, self.info)
        self.evaluators = build_evaluators(config, self.task)
        self.init_rng, self.state_rng = jax.random.split(jax.random.key(config.seed))
        self.init_batch = self.task.init_batch()
        abstract_params = sharding.unbox(jax.eval_shape(self.task.init, self.init_rng, self.init_batch))
        with _config_errors("optim.rules"):
            self.optimizer = build_optimizer(config.optim, abstract_params, config.total_steps)
        with _config_errors("init_from"):
            init_from_lib.check(config.init_from, abstract_params, self._adapt_tower())
        self.abstract_state, self.shardings = sharding.abstract_sharded(self._new_state, self.mesh, self.rules,
                                                                        self.init_rng)  # fmt: skip
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        step = make_train_step(
            self.task.loss,
            self.optimizer.tx,
            self.optimizer.schedule,
            config.optim.grad_accum_steps,
            frozen=self.optimizer.frozen,
            accumulate=getattr(self.task, "accumulate", None),
        )
        self.compiler_options = compiler_options(config)
        self.step_fn = jax.jit(
            step,
            compiler_options=self.compiler_options,
            in_shardings=(self.shardings, self.batch_sharding),
            out_shardings=(self.shardings, None),
            donate_argnums=0,
        )

    def _new_state(self, rng) -> TrainState:
        params = self.task.init(rng, self.init_batch)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.optimizer.tx.init(params),
            rng=jax.random.key_data(self.state_rng),
        )

    def activations(self):
        return sharding.activation_context(self.mesh, self.rules)

    def init_state(self) -> TrainState:
        """A fresh state, created directly in its sharded layout, then `init_from` weights if configured."""
        state = sharding.create_sharded(
            self._new_state, self.shardings, self.init_rng, compiler_options=self.compiler_options
        )
        cfg = self.config.init_from
        if cfg.kind:
            with _config_errors("init_from"):
                params = state.params
                for loaded, target in init_from_lib.load(cfg):
                    params = init_from_lib.merge(params, init_from_lib.adapt(cfg, loaded, self._adapt_tower()), target)
            state = state.replace(params=params)
            logger.info("initialized %r from %s %s", cfg.target or "all params", cfg.kind, cfg.path)
        return state

    def _adapt_tower(self):
        """The tower `init_from.adapt` makes weights for: model.image's (None when nothing is adapted)."""
        if not self.config.init_from.adapt:
            return None
        return tower_from_config(self.config.model.image, jnp.float32)

    def model_flops(self, batch_size: int | None = None) -> float:
        """FLOPs of one train step on a global batch (default: the config's): the contractions of the loss and of
        its gradient (`mmjax.layers.flops`), counted from the traced step, so frozen towers cost their forward
        alone; with remat on, the recomputed forward counts too. The same count on every backend."""
        params = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), self.abstract_state.params)
        size = batch_size or self.config.batch_size  # shapes only: no host copy of a (possibly huge) global batch
        batch = {k: jax.ShapeDtypeStruct((size, *v.shape[1:]), v.dtype) for k, v in self.task.step_batch(1).items()}

        def loss(p, b):
            return self.task.loss(stop_frozen(p, self.optimizer.frozen), b, self.init_rng)[0]

        with self.activations():
            return function_flops(jax.grad(loss), params, batch)

    def train_data(self):
        return mmdata.build_pipeline(data_config(self.config), "train", train=True, mesh=self.mesh)

    def evaluator(self, kind: str):
        """The first `config.evals` entry of type `kind`: how a script that studies a run finds its predictions."""
        found = next((e for e in self.evaluators.values() if e.cfg.type == kind), None)
        if found is None:
            kinds = sorted({e.cfg.type for e in self.evaluators.values()})
            raise mmconfig.ConfigError(f"config.evals: no evaluator of type {kind!r} (there: {kinds})")
        return found

    def restore_params(self, workdir: str | os.PathLike, step: int | None = None) -> tuple[int, Any]:
        """(step, params) of a checkpoint in `workdir` (default: the newest that reads back whole), placed on this
        mesh; run the model on them inside `activations()`. It only reads, and only the parameters (not the
        optimizer state): a run still training, or storage this process may not write, is fine. A config whose
        model does not fit the checkpoint: ResumeMismatch naming the keys."""
        ckpt = Checkpointer(epath.Path(workdir) / "checkpoints", read_only=True)

        def fits(s: int, saved: dict) -> None:
            check_readable(saved, self.config, self.info, str(workdir), s)

        try:
            with self.activations():
                if step is None:
                    step, params = ckpt.restore_newest(self.abstract_state, check=fits, params_only=True)
                else:
                    fits(step, ckpt.saved_config(ckpt.require(step)))
                    params = ckpt.restore_params(step, self.abstract_state.params)
        finally:
            ckpt.close()
        if step is None:
            raise no_checkpoint(ckpt.directory)
        return step, params


@contextlib.contextmanager
def _config_errors(key: str):
    """A mistake in `key` found while building the run (a rule that matches nothing, an init_from subtree that is
    not there): one line naming the key, like every config error, not a traceback."""
    try:
        yield
    except (ValueError, KeyError, re.error, FileNotFoundError) as e:
        if isinstance(e, mmconfig.ConfigError):
            raise
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        one_line = "; ".join(line.strip() for line in message.splitlines() if line.strip())
        raise mmconfig.ConfigError(f"config key {key!r}: {one_line}") from e


@contextlib.contextmanager
def _sigterm_flag():
    """Turn SIGTERM (preemption) into a flag the loop checks after each step, so it can save and exit."""
    flag = {"set": False}
    if distributed.preemption_sync_enabled():
        # Multi-process: JAX's coordination service owns SIGTERM (a Python handler would replace its C++ one) and
        # the loop polls `distributed.reached_preemption_sync_point` instead, so every process stops at one step.
        yield flag
        return

    def handler(signum, frame):
        del signum, frame
        flag["set"] = True

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: no handler, no flag
        previous = None
    try:
        yield flag
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def train(
    config: ml_collections.ConfigDict, workdir: str, *, devices: Sequence[jax.Device] | None = None
) -> dict[str, Any]:
    """Train `config` in `workdir`, resuming from its newest complete checkpoint. Returns the final metrics.

    `devices`: the devices to train on (default: all); the mesh in `config.mesh` must fit their number.
    """
    workdir = epath.Path(workdir)  # local or remote (gs://): every host of a pod must see the same workdir
    workdir.mkdir(parents=True, exist_ok=True)
    main = jax.process_index() == 0
    lock = WorkdirLock(workdir) if main else contextlib.nullcontext()
    with lock, log_file(workdir):  # one run per workdir: a second one fails at once, naming the holder
        return _train(config, workdir, devices, main)


def _train(config, workdir: epath.Path, devices, main: bool) -> dict[str, Any]:
    ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)  # fails now if it cannot write
    try:
        setup = Setup(config, devices)
        train_it = setup.train_data()

        def fits(step: int, saved: dict) -> None:
            check_resume(saved, config, setup.info, str(workdir), step)

        start, state = ckpt.restore_newest(setup.abstract_state, train_it, check=fits)
    except BaseException:
        ckpt.close()
        raise
    logger.info("%s", header(config, setup, str(workdir)))
    if main:  # what the task was built with, so the run's model can be rebuilt without its dataset (mmjax.predict)
        (workdir / DATASET_INFO).write_text(json.dumps(dataclasses.asdict(setup.info), indent=1))
    if start is not None:
        logger.info("resumed from step %d in %s", start, ckpt.directory)
    else:
        start, state = 0, setup.init_state()
    writer = MetricWriter(workdir, enabled=main)
    progress = Progress(config.total_steps, start, enabled=main and config.progress)
    loop = _Loop(config, setup, writer, progress, workdir)
    try:
        with setup.activations(), _sigterm_flag() as preempted:
            state = loop.run(state, train_it, ckpt, start, preempted)
    finally:
        progress.close()
        writer.close()
        ckpt.close()
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(setup.abstract_state.params))
    # `preempted`: the run saved and stopped early on SIGTERM; a caller looping over runs (a sweep) must stop too.
    return {**loop.last, "params": num_params, "preempted": bool(preempted["set"])}


def header(config, setup: Setup, workdir: str) -> str:
    """What a run is, in a few lines: config, devices and mesh, model size, data, evaluators."""
    mesh = " x ".join(f"{a}={n}" for a, n in setup.mesh.shape.items() if n > 1) or "one device"
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(setup.abstract_state.params))
    sizes = ", ".join(f"{s} {n:,}" for s, n in setup.info.sizes.items()) or "sizes unknown"
    skipped = {s: setup.info.skipped_in(s) for s in setup.info.skipped if setup.info.skipped_in(s)}
    if skipped:
        sizes += " (bad records skipped when preparing: " + ", ".join(f"{s} {n}" for s, n in skipped.items()) + ")"
    when = lambda e: (f", every {e.every}" if e.every else "") + (", at the end" if e.at_end else "")  # noqa: E731
    evals = ", ".join(f"{n} ({e.type} on {e.split}{when(e)})" for n, e in config.evals.items())
    device = setup.devices[0]
    return (
        f"mmjax train {config.config_spec or '(config)'} -> {workdir}\n"
        f"  {len(setup.devices)} {device.platform} device(s) ({device.device_kind}), mesh {mesh}, "
        f"sharding {config.sharding}, {jax.process_count()} process(es)\n"
        f"  task {config.task}: {params:,} parameters, batch {config.batch_size}, {config.total_steps} steps\n"
        f"  data {config.data.source}: {sizes}\n"
        f"  evals: {evals or 'none'}"
    )


class _Loop:
    def __init__(self, config, setup: Setup, writer: MetricWriter, progress: Progress, workdir: epath.Path):
        self.config, self.setup, self.writer, self.progress, self.workdir = config, setup, writer, progress, workdir
        self.last: dict[str, Any] = {}
        self.compiled = None
        # per device: MFU compares one device's share of the model's work with that device's peak
        self.flops = setup.model_flops() / len(setup.devices)
        self.peak = device_peak_flops()

    def compile(self, state, batch):
        self.compiled = self.setup.step_fn.lower(state, batch).compile()

    def run(self, state, train_it, ckpt, start, preempted):
        config, total = self.config, self.config.total_steps
        profile = tuple(config.profile_steps)
        pending: list[tuple[int, dict]] = []
        window_start, tracing, saving = None, False, False
        for step in range(start, total):
            batch = next(train_it)
            if self.compiled is None:
                self.compile(state, batch)
                window_start = time.perf_counter()  # step times exclude compilation
            done = step + 1  # steps are counted from 1, as in metrics.jsonl and checkpoints
            if profile and done == profile[0]:
                jax.profiler.start_trace(str(self.workdir / "profile"))
                tracing = True
            state, metrics = self.compiled(state, batch)
            if saving:  # the previous step's checkpoint was written while this step computed: commit it before
                ckpt.wait()  # this step is logged, so a kill never loses more than checkpoint_every logged steps
                saving = False
            if distributed.reached_preemption_sync_point(done):  # a SIGTERM reached some process
                preempted["set"] = True
            if tracing and (done == profile[-1] or done == total or preempted["set"]):
                jax.block_until_ready(state)
                jax.profiler.stop_trace()
                tracing = False
            pending.append((done, metrics))
            if pending and (done % config.log_every == 0 or done == total):
                window_start = self.log(pending, window_start, train_it)
                pending = []
            if done % config.checkpoint_every == 0 or done == total or preempted["set"]:
                saving = ckpt.save(done, state, train_it, config.to_dict(), force=preempted["set"])
            if preempted["set"]:
                if pending:  # the resumed run starts after `done`: log what it will not
                    self.log(pending, window_start, train_it)
                logger.warning("SIGTERM: saved step %d, exiting", done)
                ckpt.wait()
                return state
            if done != total and self.evaluate(state, done, total):
                window_start = time.perf_counter()
            self.progress.update(done, self.last.get("loss"))
        if total > start or not self.evaluated(total):  # a run preempted at its last step still evaluates
            self.evaluate(state, total, total)
        return state

    def evaluated(self, step: int) -> bool:
        from mmjax.eval import read_eval_json

        return str(step) in read_eval_json(self.workdir).get("history", {})

    def log(self, pending, window_start: float, train_it) -> float:
        """Write the mean metrics of the `pending` steps; returns when they finished (the next window's start).

        The clock is read after the metrics reach the host: steps are dispatched asynchronously, so only then
        have they run.
        """
        steps = [s for s, _ in pending]
        host = jax.device_get([m for _, m in pending])
        now = time.perf_counter()
        seconds = now - window_start
        for s, m in zip(steps, host):
            if int(m["nonfinite"]):
                if self.config.on_nonfinite == "error":
                    raise FloatingPointError(
                        f"non-finite loss or gradient at step {s} (loss={float(m['loss'])}, grad_norm="
                        f"{float(m['grad_norm'])}); the update was not applied. Set on_nonfinite='skip' to skip."
                    )
                logger.warning("step %d: non-finite loss, update skipped", s)
        avg = {k: float(np.mean([np.asarray(m[k]) for m in host])) for k in host[0] if k != "nonfinite"}
        step_time = seconds / len(pending)
        avg.update(
            step_time_ms=1000 * step_time,
            examples_per_sec=self.config.batch_size / step_time,
            skipped_updates=float(sum(int(m["nonfinite"]) for m in host)),
            # bad records of the train split skipped when the dataset was prepared, and since by the pipeline
            skipped_records=float(self.setup.info.skipped_in("train") + train_it.num_skipped),
        )
        if self.flops:
            avg["tflops_per_device"] = self.flops / step_time / 1e12
            if self.peak:
                avg["mfu"] = self.flops / step_time / self.peak
        self.last = avg
        self.writer.write(steps[-1], avg)
        return now

    def evaluate(self, state, step: int, total: int) -> bool:
        """Run the evaluators due after `step`, into eval.json; returns whether any ran."""
        from mmjax.eval import write_eval_json

        due = [e for e in self.setup.evaluators.values() if e.due(step, total)]
        if not due:
            return False
        metrics = run_evaluators(due, state.params, self.setup.mesh)
        if jax.process_index() == 0:
            write_eval_json(self.workdir / "eval.json", metrics, step)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in list(metrics.items())[:6] if isinstance(v, float))
            more = f" (+{len(metrics) - 6} more in eval.json)" if len(metrics) > 6 else ""
            self.progress.pause()
            logger.info("eval at step %d: %s%s", step, shown, more)
        self.last = {**self.last, **{f"eval/{k}": v for k, v in metrics.items()}}
        return True


def evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    split: str | None = None,
    *,
    evals: Sequence[str] | None = None,
    step: int | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> dict[str, Any]:
    """Run evaluators on a checkpoint of `workdir` (the `mmjax eval` command) and merge into workdir/eval.json.

    evals: names in config.evals (default: all of them); any evaluator can be added to a config by override,
      e.g. `--config.evals.zs.type=zeroshot --config.evals.zs.split=test`.
    split: evaluate on this split instead of each evaluator's own; its metrics are then prefixed with it
      (`compositional/retrieval/...`), so they sit beside the configured split's, never over them.
    step: the checkpoint (default: the newest complete one).
    """
    from mmjax.eval import write_eval_json

    unknown = sorted(set(evals or ()) - set(config.evals))
    if unknown:
        raise mmconfig.ConfigError(f"--evals {unknown}: not in config.evals (there: {sorted(config.evals)})")
    check_saved(workdir, step)
    if split:
        check_splits(config, mmdata.available_splits(data_config(config)), extra={"--split": split})
    setup = Setup(config, devices)
    chosen = [e for name, e in setup.evaluators.items() if evals is None or name in evals]
    step, params = setup.restore_params(workdir, step)
    with setup.activations():
        metrics = run_evaluators(chosen, params, setup.mesh, split)
    if jax.process_index() == 0:
        write_eval_json(epath.Path(workdir) / "eval.json", metrics, step)
    return metrics
