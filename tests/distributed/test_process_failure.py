"""When one process of a multi-process run dies, freezes or is preempted, the others do not hang.

The processes are started directly, not through local_multiprocess.sh (which would stop the rest itself).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from multiprocess_testing import SCRIPTS, read_metrics, start_processes, tiny_args

HEARTBEAT_TIMEOUT = 10  # MMJAX_HEARTBEAT_TIMEOUT for these runs, seconds
DEADLINE = 60  # a failure must end the other process within this many seconds


def _start_training(mp_env, data_dir, tmp_path) -> tuple[list[subprocess.Popen], object]:
    """Two 1-device processes training far longer than a test, logging every step; returns once training runs."""
    workdir = tmp_path / "workdir"
    args = tiny_args(data_dir, workdir, "mesh.data=-1", "total_steps=100000", "checkpoint_every=100000", "log_every=1")
    procs = start_processes(mp_env, 2, args, tmp_path, MMJAX_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT))
    start = time.monotonic()
    while len(read_metrics(workdir)) < 2:  # two steps done: both processes are inside the training loop
        if any(p.poll() is not None for p in procs) or time.monotonic() - start > 180:
            _kill(procs)
            pytest.fail("the run did not start:\n" + _logs(tmp_path))
        time.sleep(0.2)
    return procs, workdir


def _kill(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _logs(tmp_path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("process_*.log")))


def _exit_within(proc, seconds: float) -> tuple[int, float]:
    start = time.monotonic()
    try:
        return proc.wait(timeout=seconds), time.monotonic() - start
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - start


def test_a_killed_process_makes_the_other_fail(mp_env, mp_data_dir, tmp_path):
    procs, _ = _start_training(mp_env, mp_data_dir, tmp_path)
    try:
        procs[1].kill()
        code, seconds = _exit_within(procs[0], DEADLINE)
        assert code is not None, f"process 0 still running {DEADLINE}s after process 1 died:\n{_logs(tmp_path)}"
        assert code != 0, _logs(tmp_path)
    finally:
        _kill(procs)


def test_a_frozen_coordinator_makes_the_other_fail_after_the_heartbeat_timeout(mp_env, mp_data_dir, tmp_path):
    # SIGSTOP keeps every socket open, so nothing but the missing heartbeats can reveal it.
    procs, _ = _start_training(mp_env, mp_data_dir, tmp_path)
    try:
        procs[0].send_signal(signal.SIGSTOP)
        code, seconds = _exit_within(procs[1], DEADLINE)
        assert code is not None, f"process 1 still running {DEADLINE}s after process 0 froze:\n{_logs(tmp_path)}"
        assert code != 0
        assert seconds < HEARTBEAT_TIMEOUT + 30, seconds
        assert "distributed service detected fatal errors" in (tmp_path / "process_1.log").read_text()
    finally:
        _kill(procs)  # SIGKILL ends a stopped process too


def test_sigterm_on_one_process_saves_the_same_step_on_all_and_exits_cleanly(mp_env, mp_data_dir, tmp_path):
    procs, workdir = _start_training(mp_env, mp_data_dir, tmp_path)
    try:
        procs[1].send_signal(signal.SIGTERM)  # a preemption notice reaching one host only
        codes = [_exit_within(p, DEADLINE)[0] for p in procs]
        assert codes == [0, 0], _logs(tmp_path)
    finally:
        _kill(procs)
    saved = [re.findall(r"SIGTERM: saved step (\d+)", (tmp_path / f"process_{i}.log").read_text()) for i in (0, 1)]
    assert saved[0] and saved[0] == saved[1], saved
    step = int(saved[0][0])
    assert 2 <= step < 100000
    assert [p.name for p in (workdir / "checkpoints").iterdir()] == [str(step)]
    data = sorted(p.name for p in (workdir / "checkpoints" / str(step) / "data").glob("process_*.json"))
    assert data == ["process_0-of-2.json", "process_1-of-2.json"]
    assert read_metrics(workdir)[-1]["step"] == step


def test_local_multiprocess_stops_the_others_when_one_fails(tmp_path):
    # A stand-in for python: process 1 fails at once, process 0 would run for a minute.
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/usr/bin/env bash\n[ "$MMJAX_PROCESS_ID" = 1 ] && exit 3\nexec sleep 60\n')
    fake_python.chmod(0o755)
    start = time.monotonic()
    result = subprocess.run(
        [str(SCRIPTS / "local_multiprocess.sh"), "--port", "1", "--grace", "2", "--log-dir", str(tmp_path), "2", "x"],
        env={**os.environ, "PYTHON": str(fake_python)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3, result.stderr
    assert time.monotonic() - start < 10
    assert "process 1 exited with status 3; stopping the others" in result.stderr


def test_local_multiprocess_dry_run_prints_one_command_per_process():
    result = subprocess.run(
        [str(SCRIPTS / "local_multiprocess.sh"), "--dry-run", "--devices-per-process", "2", "--port", "4321"]
        + ["3", "--config", "c.py:tiny", "--config.model.name=a b"],
        env={**os.environ, "PYTHON": sys.executable, "XLA_FLAGS": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert f"MMJAX_PROCESS_ID={i} " in line
        assert "MMJAX_COORDINATOR=127.0.0.1:4321 MMJAX_NUM_PROCESSES=3" in line
        assert "XLA_FLAGS=--xla_force_host_platform_device_count=2" in line
        assert line.endswith("-m mmjax train --config c.py:tiny '--config.model.name=a b'")
