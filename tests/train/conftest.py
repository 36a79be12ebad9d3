"""Fixtures for the trainer tests: one tiny shapes dataset per session, tiny configs, one baseline run.

Compilation dominates these tests on a CPU, so: tests/conftest.py turns most XLA:CPU optimizations off,
subprocesses get the same flags and share a persistent compilation cache, and one baseline run
(`baseline_run`) serves many tests.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import pytest
from fast_xla import FAST_XLA_FLAGS
from train_testing import BASELINE_PROFILE, BASELINE_STEPS, REPO, TINY, tiny_overrides

from mmjax import config as mmconfig
from mmjax import data as mmdata


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """A session-wide data_dir holding the tiny shapes dataset, built once here (never the default data_dir)."""
    path = str(tmp_path_factory.mktemp("tensorflow_datasets"))
    config = mmconfig.load_config(TINY, [f"data.data_dir={path}"])
    mmdata.open_source(config.data, "train")  # prepares every split
    return path


@pytest.fixture(scope="session")
def tiny_config(data_dir):
    """tiny_config("optim.lr=0.1", ...) -> the tiny CLIP config on the session dataset, overrides applied."""

    def make(*overrides: str) -> ml_collections.ConfigDict:
        return mmconfig.load_config(TINY, tiny_overrides(data_dir, *overrides))

    return make


@pytest.fixture(scope="session")
def subprocess_env(tmp_path_factory) -> dict[str, str]:
    """Environment for `python -m mmjax` subprocesses: one CPU device, fast compiles, a shared compile cache."""
    env = dict(os.environ)
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count=1 {FAST_XLA_FLAGS}",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    return env


@pytest.fixture(scope="session")
def baseline_run(tiny_config, tmp_path_factory):
    """The tiny CLIP config trained in-process on ONE device for 5 steps, tracing steps 2-3 with the profiler.

    Returns (config, workdir, result of train()). Its outputs are checked by several tests, its per-step losses
    are the reference for the multi-device runs, and its checkpoint feeds `mmjax eval` and `init_from`.
    """
    from mmjax.train.loop import train

    config = tiny_config(f"total_steps={BASELINE_STEPS}", f"profile_steps={BASELINE_PROFILE}")
    workdir = tmp_path_factory.mktemp("baseline")
    result = train(config, str(workdir), devices=jax.devices()[:1])
    return config, workdir, result
