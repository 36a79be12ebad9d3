"""Fixtures for the multi-process tests: a subprocess environment and one tiny dataset built before any run.

The dataset is built here, once, in this process: processes of a multi-process run would otherwise all try to
generate it into the same directory at once.
"""

from __future__ import annotations

import os

import pytest
from multiprocess_testing import REPO, SAME_DATA, TINY

from mmjax import config as mmconfig
from mmjax import data as mmdata


@pytest.fixture(scope="session")
def mp_data_dir(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("tensorflow_datasets"))
    config = mmconfig.load_config(TINY, [f"data.data_dir={path}", *SAME_DATA])
    mmdata.open_source(config.data, "train")  # prepares every split
    return path


@pytest.fixture(scope="session")
def mp_env() -> dict[str, str]:
    """Environment for `python -m mmjax` subprocesses: CPU only, no stray multi-process variables from the caller.

    No persistent compilation cache: with jax 0.10.2, a multi-device XLA:CPU step loaded from the cache deadlocks
    in its collectives (devices wait in different all-gathers until the 40 s rendezvous timeout aborts).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMJAX_", "SLURM_", "TPU_", "MEGASCALE_"))}
    env = {k: v for k, v in env.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_ENABLE_COMPILATION_CACHE="false",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    return env
