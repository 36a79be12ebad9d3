"""Fault injection: kill `mmjax train` at many moments, resume it, and check that nothing was lost.

    python experiments/fault_suite.py --trials 24 --out runs/faults          # the long version (~10 min on 2 cores)

One uninterrupted run of the tiny CLIP config is the reference. Each trial starts the same run, interrupts it once,
then reruns it to the end on the same workdir. The interruptions:
  kill-random   SIGKILL at a random moment after the first checkpoint
  kill-save     SIGKILL right after an asynchronous checkpoint save started (its files being written)
  kill-eval     SIGKILL during an evaluation
  term-eval     SIGTERM during an evaluation (a preemption notice: the run must save and exit 0)
For each trial it records the resumed step, the steps lost (the last step logged before the interruption minus the
step resumed from; never more than checkpoint_every), and whether every loss logged after the resume, the final
parameters and the final evaluation equal the reference's bit for bit. `tests/train/test_fault_suite.py` runs
one trial of each kind.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = f"{REPO}/configs/clip_shapes.py:tiny"
KINDS = ("kill-random", "kill-save", "kill-eval", "term-eval")

# The interrupted run: markers tell the harness where the run is, and short pauses at those places give a kill
# time to land there (the computation itself is unchanged).
HOOKED_MMJAX = """
import pathlib, sys, time
marks = pathlib.Path(sys.argv.pop(1))
from mmjax.train import checkpoint, evaluate, metrics
save = checkpoint.Checkpointer.save
def hooked_save(self, step, *a, **k):
    started = save(self, step, *a, **k)
    (marks / f"saving-{step}").touch()
    return started
checkpoint.Checkpointer.save = hooked_save
run = evaluate.Evaluator.run
def hooked_run(self, *a, **k):
    (marks / "evaluating").touch()
    time.sleep(0.5)
    return run(self, *a, **k)
evaluate.Evaluator.run = hooked_run
write = metrics.MetricWriter.write
metrics.MetricWriter.write = lambda self, *a: (write(self, *a), time.sleep(0.05))[0]
from mmjax.cli import main
sys.exit(main())
"""


def train_args(workdir, data_dir, total: int, every: int, eval_every: int) -> list[str]:
    overrides = [
        f"data.data_dir={data_dir}",
        "progress=False",
        f"total_steps={total}",
        f"checkpoint_every={every}",
        f"eval_every={eval_every}",
        "log_every=1",
        "keep_checkpoints=3",
    ]
    return ["train", "--config", TINY, "--workdir", str(workdir), *(f"--config.{o}" for o in overrides)]


def read_losses(workdir) -> list[tuple[int, float]]:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by the kill
            continue
        out.append((record["step"], record["loss"]))
    return out


def final_params(workdir, step: int):
    import jax

    from mmjax.train.checkpoint import Checkpointer

    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints", async_save=False)
    params = jax.device_get(ckpt.restore_params(step))
    ckpt.close()
    return [np.asarray(x) for x in jax.tree.leaves(params)]


def _wait(proc, condition, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def trial(kind: str, workdir: pathlib.Path, data_dir: str, env: dict, rng: random.Random, *, total, every, eval_every):
    """One interrupted run and its resumption; returns what happened."""
    marks = workdir.parent / f"{workdir.name}.marks"
    marks.mkdir(parents=True, exist_ok=True)
    args = train_args(workdir, data_dir, total, every, eval_every)
    log = open(workdir.parent / f"{workdir.name}.interrupted.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOOKED_MMJAX, str(marks), *args], env=env, cwd=REPO, stdout=log, stderr=log
    )
    try:
        first_ckpt = lambda: (workdir / "checkpoints" / str(every)).exists()  # noqa: E731
        if kind == "kill-random":
            reached = _wait(proc, first_ckpt)
            time.sleep(rng.uniform(0.0, 1.5))
        elif kind == "kill-save":
            target = rng.choice([s for s in range(2 * every, total, every)] or [every])
            reached = _wait(proc, lambda: (marks / f"saving-{target}").exists())
        else:
            reached = _wait(proc, lambda: (marks / "evaluating").exists())
        logged_before = max((s for s, _ in read_losses(workdir)), default=0)
        proc.send_signal(signal.SIGTERM if kind == "term-eval" else signal.SIGKILL)
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    resume_log = workdir.parent / f"{workdir.name}.resumed.log"
    with open(resume_log, "w") as out:
        resumed = subprocess.run([sys.executable, "-m", "mmjax", *args], env=env, cwd=REPO, stdout=out, stderr=out)
    text = resume_log.read_text()
    match = re.search(r"resumed from step (\d+)", text)
    resumed_from = int(match.group(1)) if match else 0
    return {
        "kind": kind,
        "reached": reached,
        "interrupted_exit": code,
        "logged_before": logged_before,
        "resumed_from": resumed_from,
        "steps_lost": max(0, logged_before - resumed_from),
        "resume_exit": resumed.returncode,
        "traceback_in_resume": "Traceback" in text,
    }


def compare(workdir, reference, resumed_from: int, total: int) -> dict:
    """Losses logged after the resume, final parameters and final evaluation against the reference run."""
    expected = dict(read_losses(reference))
    after = [(s, loss) for s, loss in read_losses(workdir)][-(total - resumed_from) :] if total > resumed_from else []
    losses_equal = bool(after) and all(expected.get(s) == loss for s, loss in after) or total == resumed_from
    params_equal = all(
        np.array_equal(a, b) for a, b in zip(final_params(workdir, total), final_params(reference, total))
    )
    evals = [json.loads((pathlib.Path(d) / "eval.json").read_text()) for d in (workdir, reference)]
    keys = [k for k in evals[1] if k not in ("step", "history")]
    eval_equal = all(evals[0].get(k) == evals[1][k] for k in keys)
    return {"losses_equal": losses_equal, "params_equal": params_equal, "eval_equal": eval_equal}


def environment(cache_dir: pathlib.Path) -> dict:
    env = dict(os.environ)
    env.update(
        XLA_FLAGS="--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0 "
        "--xla_cpu_use_fusion_emitters=false",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache_dir),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    return env


def run_suite(out: pathlib.Path, kinds, *, total=12, every=4, eval_every=6, seed=0, data_dir=None) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir or str(out / "tfds")
    env = environment(out / "jax_cache")
    reference = out / "reference"
    if not (reference / "eval.json").exists():
        args = train_args(reference, data_dir, total, every, eval_every)
        subprocess.run([sys.executable, "-m", "mmjax", *args], env=env, cwd=REPO, check=True, capture_output=True)
    rng = random.Random(seed)
    rows = []
    for i, kind in enumerate(kinds):
        workdir = out / f"trial{i:03d}-{kind}"
        row = trial(kind, workdir, data_dir, env, rng, total=total, every=every, eval_every=eval_every)
        row.update(compare(workdir, reference, row["resumed_from"], total))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="trials, cycling through the kinds")
    parser.add_argument("--out", default="runs/faults")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--total", type=int, default=16)
    parser.add_argument("--every", type=int, default=4, help="checkpoint_every")
    args = parser.parse_args()
    started = time.time()
    kinds = [KINDS[i % len(KINDS)] for i in range(args.trials)]
    rows = run_suite(pathlib.Path(args.out), kinds, total=args.total, every=args.every, eval_every=6, seed=args.seed)
    ok = [r for r in rows if r["losses_equal"] and r["params_equal"] and r["eval_equal"] and r["resume_exit"] == 0]
    summary = {
        "trials": len(rows),
        "by_kind": {k: sum(r["kind"] == k for r in rows) for k in KINDS},
        "bit_identical_after_resume": len(ok),
        "max_steps_lost": max(r["steps_lost"] for r in rows),
        "checkpoint_every": args.every,
        "sigterm_exit_codes": sorted({r["interrupted_exit"] for r in rows if r["kind"] == "term-eval"}),
        "resumes_with_a_traceback": sum(r["traceback_in_resume"] for r in rows),
        "wall_s": round(time.time() - started, 1),
    }
    (pathlib.Path(args.out) / "summary.json").write_text(json.dumps({"summary": summary, "trials": rows}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
