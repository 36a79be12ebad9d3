"""Multi-process runs: join JAX's multi-controller runtime, notice preemption, and lay a mesh over slices.

Every process runs the same `mmjax train ...`; `initialize()` (called by the CLI before anything touches a device)
decides from the environment how the processes find each other:

  MMJAX_COORDINATOR=host:port MMJAX_NUM_PROCESSES=N MMJAX_PROCESS_ID=i   explicit (local multi-process, any cluster)
  SLURM_NTASKS > 1 inside `srun` (SLURM_JOB_ID, SLURM_STEP_NODELIST,     SLURM: JAX reads these itself; one process
    SLURM_PROCID, SLURM_LOCALID)                                           per GPU, coordinator on the first node
  a Cloud TPU VM (TPU chips on the PCI bus, or TPU_WORKER_HOSTNAMES /     TPU: no arguments; JAX asks the TPU
    TPU_PROCESS_ADDRESSES / MEGASCALE_NUM_SLICES set)                      metadata server for the workers
  none of these                                                          one process: nothing to initialize

MMJAX_DISTRIBUTED=auto|explicit|slurm|tpu|off forces one of them (default auto, in the order above).

Failure detection: a process that dies stops sending heartbeats; after MMJAX_HEARTBEAT_TIMEOUT seconds (default
100) the coordination service declares it dead and every other process exits with an error instead of waiting in
a collective forever. MMJAX_INIT_TIMEOUT (default 300) bounds how long processes wait for each other at start-up.

Preemption: the coordination service listens for SIGTERM on every process; `reached_preemption_sync_point(step)`
turns a notice on any host into the SAME step on all hosts, where the loop saves a checkpoint and exits.

Hybrid mesh (multi-slice TPU): `config.dcn_mesh = {"data": 2}` says that the data axis of `config.mesh` spans 2
slices over the data-centre network (DCN); the rest of every axis stays inside a slice, on its ICI links.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

logger = logging.getLogger(__name__)

KINDS = ("auto", "explicit", "slurm", "tpu", "off")
_EXPLICIT_VARS = ("MMJAX_COORDINATOR", "MMJAX_NUM_PROCESSES", "MMJAX_PROCESS_ID")
_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
# PCI device ids of TPU chips v3 ... 7x (jax/_src/hardware_utils.py, jax 0.10). Their vendor, Google's 0x1ae0,
# is shared by gVNIC network cards on every GCE VM, hence the device check.
_TPU_PCI_DEVICES = {"0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076"}


@dataclasses.dataclass(frozen=True)
class Launch:
    """How this process joins the run. `kind` is one of "explicit", "slurm", "tpu", "single".

    coordinator / num_processes / process_id are set for "explicit" only: for SLURM and TPU, JAX detects them.
    """

    kind: str
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """Seconds; see the module docstring. From MMJAX_INIT_TIMEOUT / MMJAX_HEARTBEAT_TIMEOUT / MMJAX_SHUTDOWN_TIMEOUT."""

    initialization: int = 300
    heartbeat: int = 100
    shutdown: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Timeouts:
        names = {"initialization": "MMJAX_INIT_TIMEOUT", "heartbeat": "MMJAX_HEARTBEAT_TIMEOUT"}
        names["shutdown"] = "MMJAX_SHUTDOWN_TIMEOUT"
        values = {}
        for field, var in names.items():
            if env.get(var):
                values[field] = _positive_int(env, var)
        return cls(**values)


def detect(env: Mapping[str, str] | None = None, *, has_tpu_chips: bool | None = None) -> Launch:
    """The launch this environment describes (pure: reads `env`, default os.environ; starts nothing).

    `has_tpu_chips` overrides the PCI-bus check for TPU chips (tests).
    """
    env = os.environ if env is None else env
    kind = env.get("MMJAX_DISTRIBUTED", "auto") or "auto"
    if kind not in KINDS:
        raise ValueError(f"MMJAX_DISTRIBUTED={kind!r}: expected one of {KINDS}")
    if kind == "off":
        return Launch("single")
    if kind == "explicit" or (kind == "auto" and any(env.get(v) for v in _EXPLICIT_VARS)):
        missing = [v for v in _EXPLICIT_VARS if not env.get(v)]
        if missing:
            raise ValueError(f"explicit multi-process launch: set {', '.join(_EXPLICIT_VARS)}; missing {missing}")
        num, index = _positive_int(env, "MMJAX_NUM_PROCESSES"), int(env["MMJAX_PROCESS_ID"])
        if not 0 <= index < num:
            raise ValueError(f"MMJAX_PROCESS_ID={index} must be in [0, MMJAX_NUM_PROCESSES={num})")
        if num == 1:
            return Launch("single")
        return Launch("explicit", env["MMJAX_COORDINATOR"], num, index)
    if kind == "slurm" or (kind == "auto" and all(v in env for v in _SLURM_VARS) and int(env["SLURM_NTASKS"]) > 1):
        missing = [v for v in _SLURM_VARS if v not in env]
        if missing:
            raise ValueError(f"MMJAX_DISTRIBUTED=slurm outside an srun step: {missing} unset")
        return Launch("slurm")
    if kind == "tpu":
        return Launch("tpu")
    tpu_env = any(env.get(v) for v in ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "MEGASCALE_NUM_SLICES"))
    if tpu_env or (has_tpu_chips if has_tpu_chips is not None else _has_tpu_chips()):
        return Launch("tpu")
    return Launch("single")


def initialize(env: Mapping[str, str] | None = None) -> Launch:
    """Join the multi-process run the environment describes (see `detect`); a no-op for a single process.

    Must run before anything initializes a JAX backend (jax.devices(), any computation). Calling it again once
    initialized returns the launch without re-initializing.
    """
    env = os.environ if env is None else env
    launch = detect(env)
    if launch.kind == "single" or jax.distributed.is_initialized():
        return launch
    timeouts = Timeouts.from_env(env)
    kwargs: dict[str, Any] = dict(
        initialization_timeout=timeouts.initialization,
        heartbeat_timeout_seconds=timeouts.heartbeat,
        shutdown_timeout_seconds=timeouts.shutdown,
    )
    if launch.kind == "explicit":
        kwargs.update(
            coordinator_address=launch.coordinator,
            num_processes=launch.num_processes,
            process_id=launch.process_id,
            # Only the MMJAX_* variables decide: a stray SLURM or TPU variable must not override them.
            cluster_detection_method="deactivate",
        )
    elif launch.kind == "slurm":
        kwargs["cluster_detection_method"] = "slurm"
    # "tpu": no arguments; JAX's Cloud TPU cluster detection fills in coordinator, count and index.
    jax.distributed.initialize(**kwargs)
    _exit_on_uncaught_exception()
    logger.info(
        "distributed (%s): process %d of %d, heartbeat timeout %ds",
        launch.kind,
        jax.process_index(),
        jax.process_count(),
        timeouts.heartbeat,
    )
    return launch


def _exit_on_uncaught_exception() -> None:
    """Make an uncaught exception end this process at once, without the interpreter's clean shutdown.

    A clean exit runs jax.distributed.shutdown (atexit), which waits up to the shutdown timeout for every other
    process at a barrier, while they wait for this one inside a collective: the whole job hangs. Exiting at once
    stops this process's heartbeats, so the coordination service fails the others within the heartbeat timeout.
    """
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        previous(exc_type, exc, tb)  # the traceback, as usual
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    sys.excepthook = hook


def preemption_sync_enabled() -> bool:
    """Whether preemption notices go through JAX's coordination service (multi-controller runs)."""
    from jax._src import distributed as jax_distributed  # the manager has no public accessor (jax 0.10)

    return jax.distributed.is_initialized() and jax_distributed.global_state.preemption_sync_manager is not None


def reached_preemption_sync_point(step: int) -> bool:
    """True at the step where every process should save and exit after a SIGTERM reached any of them.

    Call it once per step on every process with the same `step`; it is a local check, not a collective.
    Always False without the coordination service (single process: the loop's own SIGTERM flag does this).
    """
    if not preemption_sync_enabled():
        return False
    from jax.experimental import multihost_utils

    return multihost_utils.reached_preemption_sync_point(step)


# ---------------------------------------------------------------------------------------------- hybrid mesh


def make_mesh(
    mesh_config: Mapping[str, int],
    devices: Sequence[jax.Device] | None = None,
    dcn_config: Mapping[str, int] | None = None,
) -> jax.sharding.Mesh:
    """`sharding.make_mesh`, or with `dcn_config` (axis -> ways across slices) a hybrid ICI x DCN mesh.

    `mesh_config` gives the GLOBAL size of each axis, as without DCN. With dcn_config={"data": 2} and a global
    data axis of 8, each slice holds data=4 on its fast ICI links and the two slices split the batch over DCN:
    only the gradient all-reduce crosses slices. An empty or all-ones `dcn_config` changes nothing.
    """
    from mmjax import sharding

    devices = list(devices) if devices is not None else jax.devices()
    dcn = dict((dcn_config or {}).items())
    if all(v == 1 for v in dcn.values()):
        return sharding.make_mesh(mesh_config, devices)
    sizes = sharding.resolve_mesh_shape(mesh_config, len(devices))
    array = hybrid_device_array(sizes, dcn, devices)
    return jax.sharding.Mesh(
        array, sharding.MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(sharding.MESH_AXES)
    )


def hybrid_device_array(sizes: Mapping[str, int], dcn_config: Mapping[str, int], devices: Sequence[Any]) -> np.ndarray:
    """Devices arranged as `sizes` (global axis sizes, in sharding.MESH_AXES order), each axis split DCN-major.

    Slices are the granules (`device.slice_index`, distinct per slice on multi-slice TPU); when the devices do not
    span several slices (CPU, GPU clusters), processes are, so the layout can be tested on one machine with
    several processes.
    """
    from jax.experimental import mesh_utils

    from mmjax.sharding import MESH_AXES

    unknown = sorted(set(dcn_config) - set(MESH_AXES))
    if unknown:
        raise ValueError(f"config key 'dcn_mesh': unknown axes {unknown}; expected a subset of {list(MESH_AXES)}")
    dcn = [int(dcn_config.get(a, 1)) for a in MESH_AXES]
    for axis, ways in zip(MESH_AXES, dcn):
        if ways < 1 or sizes[axis] % ways:
            raise ValueError(f"config key 'dcn_mesh.{axis}'={ways} must be >= 1 and divide mesh axis {sizes[axis]}")
    ici = [sizes[a] // ways for a, ways in zip(MESH_AXES, dcn)]
    by_process = len({getattr(d, "slice_index", 0) for d in devices}) == 1
    granules = len({d.process_index if by_process else d.slice_index for d in devices})
    if math.prod(dcn) != granules:
        unit = "processes" if by_process else "slices"
        raise ValueError(f"config key 'dcn_mesh' spans {math.prod(dcn)} granules but there are {granules} {unit}")
    return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, process_is_granule=by_process)


def _positive_int(env: Mapping[str, str], var: str) -> int:
    try:
        value = int(env[var])
    except ValueError:
        raise ValueError(f"{var}={env[var]!r} must be an integer") from None
    if value < 1:
        raise ValueError(f"{var}={value} must be >= 1")
    return value


def _has_tpu_chips() -> bool:
    """TPU chips on this machine's PCI bus (reads sysfs only; safe before any backend starts)."""
    for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            if open(vendor).read().strip() != "0x1ae0":
                continue
            device = open(os.path.join(os.path.dirname(vendor), "device")).read().strip()
        except OSError:
            continue
        if device in _TPU_PCI_DEVICES:
            return True
    return False
