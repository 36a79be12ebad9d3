"""Exact resume, with real processes: SIGKILL after a checkpoint, a half-written checkpoint left behind, SIGTERM.

One uninterrupted `mmjax train` run is the reference. A second run on another workdir is killed with SIGKILL,
restarted (past a fake half-written checkpoint), stopped with SIGTERM (it must save and exit 0), and restarted
again to the end. Every loss it ever logged and its final parameters must equal the reference's, bit for bit.
"""

import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
from train_testing import REPO, TINY, mmjax_command, read_metrics, tiny_overrides

from mmjax.train.checkpoint import Checkpointer

TOTAL = 16
# The interrupted runs pause after each logged step, so the test can act between steps (the steps themselves
# are unchanged). Same CLI entry point as `python -m mmjax`.
SLOW_MMJAX = (
    "import sys, time\n"
    "from mmjax.train import metrics\n"
    "write = metrics.MetricWriter.write\n"
    "metrics.MetricWriter.write = lambda self, *a: (write(self, *a), time.sleep(0.15))[0]\n"
    "from mmjax.cli import main\n"
    "sys.exit(main())\n"
)


def _args(workdir, data_dir):
    overrides = tiny_overrides(
        data_dir, f"total_steps={TOTAL}", "checkpoint_every=4", "log_every=1", "eval_every=0", "keep_checkpoints=2"
    )
    return ["train", "--config", TINY, "--workdir", str(workdir), *(f"--config.{o}" for o in overrides)]


def _start(args, env, slow: bool, log: pathlib.Path) -> subprocess.Popen:
    command = [sys.executable, "-c", SLOW_MMJAX, *args] if slow else mmjax_command(*args)
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("w"))


def _complete_steps(workdir) -> list[int]:
    path = pathlib.Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.exists() else []


def _logged_steps(workdir) -> list[int]:
    try:
        return [r["step"] for r in read_metrics(workdir)]
    except (FileNotFoundError, ValueError):  # not written yet, or a line half-written
        return []


def _wait_for(proc, condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended (rc={proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _finish(proc, log, timeout: float = 300) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.returncode not in (0, -signal.SIGKILL):
            print(log.read_text()[-5000:])


def test_killed_and_preempted_run_resumes_exactly(data_dir, subprocess_env, tmp_path):
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "interrupted"
    reference = _start(_args(ref_dir, data_dir), subprocess_env, slow=False, log=tmp_path / "reference.log")
    try:
        # 1. SIGKILL once a checkpoint is complete and a later step has been logged.
        log = tmp_path / "killed.log"
        victim = _start(_args(run_dir, data_dir), subprocess_env, slow=True, log=log)

        def past_a_checkpoint():
            complete = _complete_steps(run_dir)
            return bool(complete) and max(_logged_steps(run_dir), default=0) > complete[-1]

        _wait_for(victim, past_a_checkpoint, "a complete checkpoint and a later logged step")
        victim.send_signal(signal.SIGKILL)
        assert _finish(victim, log) == -signal.SIGKILL
        resume_from = _complete_steps(run_dir)[-1]
        assert resume_from < TOTAL

        # 2. A kill during a save leaves Orbax's temporary directory (`<step>.orbax-checkpoint-tmp[-<n>]`);
        # leave two, for steps the rerun has not reached, and check that neither is taken for a checkpoint.
        for name in (f"{resume_from + 4}.orbax-checkpoint-tmp", f"{TOTAL + 4}.orbax-checkpoint-tmp-1795346671"):
            partial = run_dir / "checkpoints" / name
            (partial / "state").mkdir(parents=True, exist_ok=True)
            (partial / "state" / "manifest.ocdbt").write_bytes(b"half")
        assert Checkpointer(run_dir / "checkpoints", async_save=False).latest_step() == resume_from

        # 3. Restart; SIGTERM once it has logged two new steps: it saves where it is and exits 0.
        log = tmp_path / "preempted.log"
        before = len(_logged_steps(run_dir))
        preempted = _start(_args(run_dir, data_dir), subprocess_env, slow=True, log=log)
        _wait_for(preempted, lambda: len(_logged_steps(run_dir)) >= before + 2, "two resumed steps")
        preempted.send_signal(signal.SIGTERM)
        assert _finish(preempted, log) == 0
        text = log.read_text()
        assert f"resumed from step {resume_from}" in text
        saved_at = int(re.search(r"SIGTERM: saved step (\d+)", text).group(1))
        assert resume_from + 2 <= saved_at < TOTAL and saved_at in _complete_steps(run_dir)

        # 4. Restart to the end.
        log = tmp_path / "final.log"
        assert _finish(_start(_args(run_dir, data_dir), subprocess_env, slow=False, log=log), log) == 0
        assert f"resumed from step {saved_at}" in log.read_text()
        assert _finish(reference, tmp_path / "reference.log") == 0
    finally:
        if reference.poll() is None:
            reference.kill()

    expected = {r["step"]: r["loss"] for r in read_metrics(ref_dir)}
    assert sorted(expected) == list(range(1, TOTAL + 1))
    logged = read_metrics(run_dir)
    assert {r["step"] for r in logged} == set(expected), "every step was logged by one of the runs"
    for r in logged:  # steps after the last checkpoint were run (and logged) twice: both times identically
        assert r["loss"] == expected[r["step"]], r["step"]
    assert len(set(expected.values())) == TOTAL

    want = Checkpointer(ref_dir / "checkpoints", async_save=False).restore_params(TOTAL)
    got = Checkpointer(run_dir / "checkpoints", async_save=False).restore_params(TOTAL)
    want, got = jax.device_get(want), jax.device_get(got)
    assert jax.tree.structure(want) == jax.tree.structure(got)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        np.testing.assert_array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32))
    assert not (ref_dir / "eval.json").exists(), "eval_every=0 never evaluates, not even at the last step"
