"""Helpers for the multi-process tests: JAX processes on 127.0.0.1 with fake CPU devices (fixtures: conftest.py)."""

from __future__ import annotations

import json
import pathlib
import shutil
import socket
import subprocess
import sys

from fast_xla import FAST_XLA_FLAGS  # tests/fast_xla.py

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "tpu_scripts"
TINY = f"{REPO}/configs/clip_shapes.py:tiny"
# The tiny config's own data (64 training scenes, global batch 16, shuffled anew each epoch, one random caption
# per image) plus random crops: the global batch sequence is a function of (seed, step) alone, so a run with 2
# processes must match a run with 1 step for step. STEPS x 16 > 64: the runs cross an epoch boundary.
SAME_DATA = ("data.random_crop=True",)
STEPS = 6


def tiny_args(data_dir: str, workdir, *overrides: str, config: str = TINY) -> list[str]:
    """`mmjax train` arguments for the tiny CLIP config on `data_dir`, mesh data=4, `overrides` applied."""
    settings = (
        f"data.data_dir={data_dir}",
        "progress=False",
        *SAME_DATA,
        "mesh.data=4",
        f"total_steps={STEPS}",
        "checkpoint_every=3",
        "eval_every=0",  # these tests compare losses and checkpoints: no evaluation to compile
        *overrides,
    )
    return ["train", "--config", config, "--workdir", str(workdir), *(f"--config.{s}" for s in settings)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(base: dict, devices: int, **extra: str) -> dict:
    return {**base, "XLA_FLAGS": f"{FAST_XLA_FLAGS} --xla_force_host_platform_device_count={devices}", **extra}


def run_single(env: dict, args: list[str], *, devices: int = 4, timeout: float = 180) -> subprocess.CompletedProcess:
    """One process with `devices` fake CPU devices."""
    result = subprocess.run(
        [sys.executable, "-m", "mmjax", *args],
        env=process_env(env, devices),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def run_local_multiprocess(
    env: dict, num: int, devices: int, args: list[str], log_dir, *, timeout: float = 240
) -> subprocess.CompletedProcess:
    """`tpu_scripts/local_multiprocess.sh` with `num` processes of `devices` fake CPU devices each."""
    command = [str(SCRIPTS / "local_multiprocess.sh"), "--devices-per-process", str(devices), "--log-dir", str(log_dir)]
    result = subprocess.run(
        [*command, str(num), *args],
        env={**env, "XLA_FLAGS": FAST_XLA_FLAGS, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    logs = "".join(p.read_text()[-3000:] for p in sorted(pathlib.Path(log_dir).glob("*.log")))
    assert result.returncode == 0, result.stderr[-4000:] + logs
    return result


def start_processes(env: dict, num: int, args: list[str], log_dir: pathlib.Path, **extra_env: str) -> list:
    """`num` processes of one device each, started directly (not through the script, which would stop the rest
    itself when one fails); their output goes to log_dir/process_<i>.log."""
    port = free_port()
    procs = []
    for i in range(num):
        penv = process_env(
            env,
            1,
            MMJAX_COORDINATOR=f"127.0.0.1:{port}",
            MMJAX_NUM_PROCESSES=str(num),
            MMJAX_PROCESS_ID=str(i),
            **extra_env,
        )
        log = open(log_dir / f"process_{i}.log", "w")  # noqa: SIM115 - the child holds it open
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "mmjax", *args], env=penv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        )
        log.close()
    return procs


def read_metrics(workdir) -> list[dict]:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def losses(workdir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(workdir)}


def copy_checkpoint(workdir, step: int, to) -> pathlib.Path:
    """A fresh workdir `to` holding only checkpoint `step` of `workdir`: a run there resumes from `step`."""
    target = pathlib.Path(to) / "checkpoints" / str(step)
    shutil.copytree(pathlib.Path(workdir) / "checkpoints" / str(step), target)
    return pathlib.Path(to)
