"""Two JAX processes (2 fake CPU devices each, via tpu_scripts/local_multiprocess.sh) train exactly like one
process with 4 devices, and checkpoints move between the two layouts with exact resumption."""

from __future__ import annotations

import json

import numpy as np
import pytest
from multiprocess_testing import (
    REPO,
    STEPS,
    copy_checkpoint,
    losses,
    read_metrics,
    run_local_multiprocess,
    run_single,
    tiny_args,
)


@pytest.fixture(scope="module")
def reference(mp_env, mp_data_dir, tmp_path_factory):
    """The uninterrupted run: 1 process x 4 devices, STEPS steps, checkpoints at 3 and 6."""
    workdir = tmp_path_factory.mktemp("one_process")
    run_single(mp_env, tiny_args(mp_data_dir, workdir), devices=4)
    return workdir


@pytest.fixture(scope="module")
def two_processes(mp_env, tmp_path_factory):
    """The same run as 2 processes x 2 devices, on a data_dir where the dataset is not prepared yet (the run
    prepares it once: process 0 first). Returns (workdir, log dir of process 1)."""
    workdir, logs = tmp_path_factory.mktemp("two_processes"), tmp_path_factory.mktemp("two_processes_logs")
    fresh = tmp_path_factory.mktemp("fresh_tensorflow_datasets")
    run_local_multiprocess(mp_env, 2, 2, tiny_args(fresh, workdir), logs)
    return workdir, logs


def test_a_fresh_dataset_is_prepared_once_by_process_0(two_processes):
    _, logs = two_processes
    text = (logs / "process_1.log").read_text()
    assert "distributed (explicit): process 1 of 2" in text
    assert "Generating" not in text and "downloaded and prepared" not in text, "process 1 reused process 0's files"


def test_two_processes_match_one_process_at_every_step(reference, two_processes):
    workdir, logs = two_processes
    expected = losses(reference)
    assert sorted(expected) == list(range(1, STEPS + 1))
    # Every step reads a different global batch (shuffled, cropped, captions drawn; a new epoch from step 5), so
    # equal losses mean the same rows in the same order and the same updates.
    assert len(set(expected.values())) == STEPS
    got = losses(workdir)
    assert sorted(got) == sorted(expected), "process 0 alone writes metrics.jsonl: one line per step"
    np.testing.assert_allclose([got[s] for s in sorted(got)], [expected[s] for s in sorted(expected)], rtol=1e-5)
    assert "distributed (explicit): process 1 of 2" in (logs / "process_1.log").read_text()


def test_checkpoint_of_two_processes_holds_both_shards(two_processes):
    step = two_processes[0] / "checkpoints" / "3"
    assert sorted(p.name for p in (step / "data").glob("process_*.json")) == [
        "process_0-of-2.json",
        "process_1-of-2.json",
    ]
    assert sorted(p.name for p in (step / "state").glob("ocdbt.process_*")) == ["ocdbt.process_0", "ocdbt.process_1"]
    # Both hold the same global data position: 3 global batches consumed, nothing skipped.
    states = [json.loads((step / "data" / f"process_{i}-of-2.json").read_text()) for i in range(2)]
    assert states[0] == states[1] == {"batches": 3, "num_skipped": 0}


def test_two_process_checkpoint_resumes_exactly_in_one_process(mp_env, mp_data_dir, reference, two_processes, tmp_path):
    workdir = copy_checkpoint(two_processes[0], 3, tmp_path / "resumed")
    result = run_single(mp_env, tiny_args(mp_data_dir, workdir), devices=4)
    assert "resumed from step 3" in result.stderr
    # The data-iterator state is the global position: process 0 of 1 continues from a file of 2 processes.
    assert "no data-iterator state" not in result.stderr
    got, expected = losses(workdir), losses(reference)
    assert sorted(got) == [4, 5, 6]
    np.testing.assert_allclose([got[s] for s in (4, 5, 6)], [expected[s] for s in (4, 5, 6)], rtol=1e-5)


def test_one_process_checkpoint_resumes_exactly_in_two_processes_on_a_hybrid_mesh(
    mp_env, mp_data_dir, reference, tmp_path
):
    # dcn_mesh={"data": 2}: the data axis spans 2 granules (processes here, slices on a multi-slice TPU).
    config = tmp_path / "clip_dcn.py"
    config.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'configs')!r})\n"
        "import ml_collections\n"
        "from clip_shapes import get_config as clip_shapes\n\n\n"
        "def get_config(arg=None):\n"
        "    c = clip_shapes(arg)\n"
        "    c.dcn_mesh = ml_collections.ConfigDict({'data': 2})\n"
        "    return c\n"
    )
    workdir = copy_checkpoint(reference, 3, tmp_path / "resumed")
    args = tiny_args(mp_data_dir, workdir, config=f"{config}:tiny")
    run_local_multiprocess(mp_env, 2, 2, args, tmp_path / "logs")
    got, expected = losses(workdir), losses(reference)
    assert sorted(got) == [4, 5, 6]
    np.testing.assert_allclose([got[s] for s in (4, 5, 6)], [expected[s] for s in (4, 5, 6)], rtol=1e-5)
    saved = json.loads((workdir / "checkpoints" / "6" / "config" / "metadata").read_text())
    assert saved["dcn_mesh"] == {"data": 2}
    assert read_metrics(workdir)[-1]["step"] == STEPS
