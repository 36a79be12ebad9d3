"""mmjax.distributed without starting anything: which launch an environment describes, timeouts, hybrid meshes."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from mmjax import distributed, sharding

SLURM = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "gpu[01-02]", "SLURM_NTASKS": "16", "SLURM_PROCID": "3"}
SLURM = {**SLURM, "SLURM_LOCALID": "3"}
EXPLICIT = {"MMJAX_COORDINATOR": "10.0.0.1:1234", "MMJAX_NUM_PROCESSES": "4", "MMJAX_PROCESS_ID": "2"}


def detect(env, tpu=False):
    return distributed.detect(env, has_tpu_chips=tpu)


def test_nothing_set_is_one_process():
    assert detect({}) == distributed.Launch("single")


def test_explicit_variables_win_over_slurm_and_tpu():
    assert detect({**SLURM, **EXPLICIT, "TPU_WORKER_HOSTNAMES": "a,b"}, tpu=True) == distributed.Launch(
        "explicit", "10.0.0.1:1234", 4, 2
    )
    assert detect({**EXPLICIT, "MMJAX_NUM_PROCESSES": "1", "MMJAX_PROCESS_ID": "0"}).kind == "single"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MMJAX_COORDINATOR": "h:1"}, "missing ['MMJAX_NUM_PROCESSES', 'MMJAX_PROCESS_ID']"),
        ({**EXPLICIT, "MMJAX_PROCESS_ID": "4"}, "MMJAX_PROCESS_ID=4 must be in [0, MMJAX_NUM_PROCESSES=4)"),
        ({**EXPLICIT, "MMJAX_NUM_PROCESSES": "four"}, "MMJAX_NUM_PROCESSES='four' must be an integer"),
        ({"MMJAX_DISTRIBUTED": "mpi"}, "MMJAX_DISTRIBUTED='mpi'"),
        ({"MMJAX_DISTRIBUTED": "slurm"}, "outside an srun step"),
    ],
)
def test_bad_settings_fail_with_the_variable_named(env, message):
    with pytest.raises(ValueError) as e:
        detect(env)
    assert message in str(e.value)


def test_slurm_inside_srun_with_several_tasks():
    assert detect(SLURM).kind == "slurm"
    assert detect({**SLURM, "SLURM_NTASKS": "1"}).kind == "single"
    no_step = {k: v for k, v in SLURM.items() if k != "SLURM_STEP_NODELIST"}  # the batch script, not an srun task
    assert detect(no_step).kind == "single"


def test_tpu_from_chips_or_worker_variables():
    assert detect({}, tpu=True).kind == "tpu"
    assert detect({"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3"}).kind == "tpu"
    assert detect({"MEGASCALE_NUM_SLICES": "2"}).kind == "tpu"
    assert detect({"MMJAX_DISTRIBUTED": "tpu"}).kind == "tpu"
    assert detect({"MMJAX_DISTRIBUTED": "off"}, tpu=True).kind == "single"


def test_this_machine_is_one_process_and_initialize_is_a_no_op():
    # The test machine has no TPU chips and no launcher variables; initialize() must then start nothing.
    assert distributed.initialize({}) == distributed.Launch("single")
    assert not jax.distributed.is_initialized()
    assert not distributed.preemption_sync_enabled()
    assert distributed.reached_preemption_sync_point(1) is False


def test_timeouts_from_environment():
    assert distributed.Timeouts.from_env({}) == distributed.Timeouts(300, 100, 300)
    env = {"MMJAX_INIT_TIMEOUT": "30", "MMJAX_HEARTBEAT_TIMEOUT": "10", "MMJAX_SHUTDOWN_TIMEOUT": "5"}
    assert distributed.Timeouts.from_env(env) == distributed.Timeouts(30, 10, 5)
    with pytest.raises(ValueError, match="MMJAX_HEARTBEAT_TIMEOUT=0 must be >= 1"):
        distributed.Timeouts.from_env({"MMJAX_HEARTBEAT_TIMEOUT": "0"})


@dataclasses.dataclass(frozen=True)
class FakeTpu:
    """What mesh_utils reads of a device, for a multi-slice layout this machine does not have."""

    id: int
    slice_index: int
    process_index: int
    platform: str = "cpu"  # not "tpu": no physical torus to look up
    device_kind: str = "fake"


def test_hybrid_mesh_puts_the_dcn_part_of_an_axis_outermost():
    # 2 slices x 8 devices; global mesh data=4, fsdp=4 with data split 2 ways over DCN.
    devices = [FakeTpu(id=i, slice_index=i // 8, process_index=i // 4) for i in range(16)]
    array = distributed.hybrid_device_array({"data": 4, "fsdp": 4, "tensor": 1}, {"data": 2}, devices)
    assert array.shape == (4, 4, 1)
    slices = np.vectorize(lambda d: d.slice_index)(array)[..., 0]
    # Rows 0-1 of the data axis live on slice 0, rows 2-3 on slice 1: fsdp (and the rest of data) stays in a
    # slice, only the data-parallel gradient reduction crosses DCN.
    np.testing.assert_array_equal(slices, [[0] * 4, [0] * 4, [1] * 4, [1] * 4])
    assert len({d.id for d in array.flat}) == 16


def test_hybrid_mesh_groups_by_process_without_slices():
    # CPU devices of a multi-process run all report slice_index 0: processes are the granules.
    devices = [FakeTpu(id=i, slice_index=0, process_index=i // 2) for i in range(4)]
    array = distributed.hybrid_device_array({"data": 4, "fsdp": 1, "tensor": 1}, {"data": 2}, devices)
    assert [d.process_index for d in array.flat] == [0, 0, 1, 1]


@pytest.mark.parametrize(
    "sizes, dcn, message",
    [
        ({"data": 4, "fsdp": 1, "tensor": 1}, {"data": 3}, "'dcn_mesh.data'=3 must be >= 1 and divide mesh axis 4"),
        ({"data": 4, "fsdp": 1, "tensor": 1}, {"data": 4}, "spans 4 granules but there are 2 slices"),
        ({"data": 4, "fsdp": 1, "tensor": 1}, {"data": 2}, "spans 2 granules but there are 1 processes"),
        ({"data": 4, "fsdp": 1, "tensor": 1}, {"pipeline": 2}, "unknown axes ['pipeline']"),
    ],
)
def test_hybrid_mesh_errors_name_the_key(sizes, dcn, message):
    devices = [FakeTpu(id=i, slice_index=i // 2, process_index=i // 2) for i in range(4)]
    if "processes" in message:  # one slice, one process: nothing to split over DCN
        devices = [FakeTpu(id=i, slice_index=0, process_index=0) for i in range(4)]
    with pytest.raises(ValueError) as e:
        distributed.hybrid_device_array(sizes, dcn, devices)
    assert message in str(e.value)


def test_make_mesh_without_dcn_is_the_plain_mesh():
    plain = sharding.make_mesh({"data": 2, "fsdp": 4})
    for dcn in (None, {}, {"data": 1, "fsdp": 1}):
        mesh = distributed.make_mesh({"data": 2, "fsdp": 4}, None, dcn)
        assert mesh.shape == plain.shape and (mesh.devices == plain.devices).all()
