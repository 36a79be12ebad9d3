"""Nothing lost, whatever happens: damaged checkpoints, failed saves, a changed config on resume, a workdir in use,
two processes preparing one dataset. Each ends in one clear message or a correct recovery."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from train_testing import REPO, read_metrics

from mmjax import cli
from mmjax.config import ConfigError
from mmjax.train import checkpoint as checkpoint_lib
from mmjax.train.checkpoint import Checkpointer, CheckpointSaveError, NoIntactCheckpoint
from mmjax.train.lock import LOCK_FILE, WorkdirInUse, WorkdirLock, holder_alive, process_start_time
from mmjax.train.loop import Setup, train

SAVE_EVERY = 2


@pytest.fixture(scope="module")
def runs(tiny_config, tmp_path_factory):
    """make(workdir, total_steps, *overrides) trains the tiny config in-process on one device; `reference` is the
    uninterrupted 6-step run every recovery is compared with."""

    def make(workdir, total, *overrides):
        config = tiny_config(f"total_steps={total}", f"checkpoint_every={SAVE_EVERY}", "eval_every=0", *overrides)
        return train(config, str(workdir), devices=jax.devices()[:1])

    reference = tmp_path_factory.mktemp("reference")
    make(reference, 6)
    return make, {r["step"]: r["loss"] for r in read_metrics(reference)}


def _damage(step_dir: pathlib.Path, how: str) -> None:
    files = sorted(f for f in step_dir.rglob("*") if f.is_file())
    if how == "truncated":
        for f in files:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif how == "missing":
        shutil.rmtree(step_dir / "state")
    elif how == "garbage":
        for f in files:
            f.write_bytes(os.urandom(max(16, f.stat().st_size)))


@pytest.mark.parametrize("how", ["truncated", "missing", "garbage"])
def test_a_damaged_newest_checkpoint_is_passed_over_and_the_run_resumes_exactly(how, runs, tmp_path, caplog, capfd):
    make, reference = runs
    make(tmp_path, 4)
    _damage(tmp_path / "checkpoints" / "4", how)
    capfd.readouterr()
    with caplog.at_level("WARNING"):
        make(tmp_path, 6)
    time.sleep(0.5)  # tensorstore's late callbacks after the failed read
    assert "Traceback" not in capfd.readouterr().err, "a recovery, not a traceback"
    warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert any(
        m.startswith("checkpoint step 4 is damaged") and str(tmp_path / "checkpoints" / "4") in m for m in warnings
    )
    assert (tmp_path / "checkpoints" / "4.damaged").is_dir(), "set aside, never deleted"
    logged = read_metrics(tmp_path)
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 3, 4, 5, 6]  # steps 3-4 run again from checkpoint 2
    for r in logged[4:]:  # the resumed run (the first one ran a 4-step schedule)
        assert r["loss"] == reference[r["step"]], r["step"]  # bit-identical to the uninterrupted 6-step run


def test_when_every_checkpoint_is_damaged_the_run_stops_instead_of_starting_over(runs, tmp_path, capsys):
    make, _ = runs
    make(tmp_path, 4)
    for step in (2, 4):
        _damage(tmp_path / "checkpoints" / str(step), "truncated")
    with pytest.raises(NoIntactCheckpoint, match=r"no intact checkpoint in .*: step 4 \(.*\); step 2 \("):
        make(tmp_path, 6)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"], "nothing deleted or moved"


def test_a_failed_save_keeps_the_earlier_checkpoints_and_fails_the_run_clearly(runs, tmp_path, monkeypatch):
    make, _ = runs
    real_save = checkpoint_lib.ocp.CheckpointManager.save

    def full_disk(self, step, *args, **kwargs):
        if step == 4:
            raise OSError(28, "No space left on device")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpoint_lib.ocp.CheckpointManager, "save", full_disk)
    with pytest.raises(CheckpointSaveError) as e:
        make(tmp_path, 6)
    message = str(e.value)
    assert "saving step 4 to" in message and "No space left on device" in message and "(2) are intact" in message
    assert "\n" not in message
    monkeypatch.setattr(checkpoint_lib.ocp.CheckpointManager, "save", real_save)
    assert Checkpointer(tmp_path / "checkpoints", async_save=False).restore_params(2) is not None


def test_a_checkpoint_directory_that_cannot_be_written_fails_before_training(tmp_path, capsys):
    (tmp_path / "checkpoints").write_text("a file where the checkpoints should go")
    argv = ["train", "--config", f"{REPO}/configs/clip_shapes.py:tiny", "--workdir", str(tmp_path)]
    assert cli.main([*argv, f"--config.data.data_dir={tmp_path / 'tfds'}"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"mmjax: error: cannot keep checkpoints in {tmp_path / 'checkpoints'}: "), last
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "tfds").exists(), "before any work"


def test_resuming_with_a_model_that_does_not_fit_fails_naming_the_keys(runs, tmp_path, caplog):
    make, _ = runs
    make(tmp_path, 2)
    with pytest.raises(ConfigError) as e:
        make(tmp_path, 4, "model.image.width=48", "optim.lr=0.5")
    message = str(e.value)
    assert "\n" not in message
    assert "model.image.width (32 -> 48)" in message and "optim.lr (0.001 -> 0.5)" in message
    assert f"--config.init_from.path={tmp_path}" in message
    # a longer run and another learning rate fit the same state: allowed, and said
    with caplog.at_level("INFO"):
        make(tmp_path, 4, "optim.lr=0.5")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "changed keys that alter training: optim.lr (0.001 -> 0.5)" in text
    assert "changed keys: total_steps (2 -> 4)" in text
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_second_run_on_a_workdir_in_use_fails_at_once_naming_the_holder(tmp_path, capsys):
    holder = _sleeper()
    try:
        lock = WorkdirLock(tmp_path)
        lock.me = {**lock.me, "pid": holder.pid, "start": process_start_time(holder.pid)}
        lock.path.write_text(json.dumps({**lock.me, "time": time.time()}))
        argv = ["train", "--config", f"{REPO}/configs/clip_shapes.py:tiny", "--workdir", str(tmp_path)]
        started = time.monotonic()
        assert cli.main(argv) == 1
        assert time.monotonic() - started < 10, "fails at once, before any data or compilation"
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"mmjax: error: workdir {tmp_path} is in use by pid {holder.pid} on host ")
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, caplog):
    dead = _sleeper()
    dead.kill()
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid, "time": 0}))
    assert not holder_alive(json.loads((tmp_path / LOCK_FILE).read_text()))
    with caplog.at_level("WARNING"), WorkdirLock(tmp_path) as lock:
        held = json.loads(lock.path.read_text())
        assert held["pid"] == os.getpid()
        with pytest.raises(WorkdirInUse):  # and while held, nobody else gets it
            WorkdirLock(tmp_path).acquire()
    assert any(f"left by pid {dead.pid}" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / LOCK_FILE).exists(), "released at the end"
    # a holder on another host is alive while it refreshes the lock
    assert holder_alive({"host": "elsewhere", "pid": 1, "time": time.time()})
    assert not holder_alive({"host": "elsewhere", "pid": 1, "time": time.time() - 3600})


def test_two_processes_preparing_one_dataset_at_once_both_succeed(tmp_path):
    """Without the prepare lock, TFDS fails the second writer (FileExistsError renaming `incomplete...`)."""
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from mmjax import data\n"
        "cfg = data.default_config()\n"
        "cfg.data_dir = sys.argv[1]\n"
        "cfg.shapes.update(num_train=200, num_validation=8, num_test=8, num_compositional=8)\n"
        "info = data.dataset_info(cfg)\n"
        "print(len(data.open_source(cfg, 'train').data))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert [out.strip().splitlines()[-1] for out, _ in outs] == ["200", "200"]
    assert sum("prepared mmjax_shapes in" in err for _, err in outs) == 1, "one prepared it, the other reused it"


def test_a_reader_passes_over_a_damaged_newest_checkpoint_and_renames_nothing(runs, tiny_config, tmp_path, caplog):
    """`mmjax eval` and the reports read the newest intact parameters; the damaged step stays where training,
    which owns the workdir, will find it."""
    make, _ = runs
    make(tmp_path, 4)
    _damage(tmp_path / "checkpoints" / "4", "truncated")
    setup = Setup(tiny_config(f"checkpoint_every={SAVE_EVERY}", "eval_every=0"), jax.devices()[:1])
    with caplog.at_level("WARNING"):
        step, params = setup.restore_params(tmp_path)
    time.sleep(0.5)  # tensorstore's late callbacks after the failed read
    assert step == 2
    assert any(r.getMessage().startswith("checkpoint step 4 is damaged") for r in caplog.records)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"]
    saved = Checkpointer(tmp_path / "checkpoints", async_save=False, read_only=True).restore_params(2)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, saved)
