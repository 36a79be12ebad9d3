"""`mmjax bench`: steady-state train-step time, examples/s, model TFLOP/s per device, MFU and peak memory, as a dict.

The step runs on a fixed batch (`Task.step_batch`: placeholder examples of the configured shapes), so the
number measures the model and the step alone; `data=True` adds the input pipeline's own examples/s for comparison.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import jax
import numpy as np

from mmjax.train.inputs import data_config
from mmjax.train.loop import Setup
from mmjax.train.metrics import device_peak_flops, xla_cost_flops


def _peak_memory() -> int | None:
    stats = jax.local_devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def bench(config, *, steps: int = 20, warmup: int = 3, data: bool = False) -> dict[str, Any]:
    setup = Setup(config)
    state = setup.init_state()
    batch = jax.device_put(setup.task.step_batch(config.batch_size), setup.batch_sharding)
    with setup.activations():
        t0 = time.perf_counter()
        compiled = setup.step_fn.lower(state, batch).compile()
        compile_s = time.perf_counter() - t0
        for _ in range(warmup):
            state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        t0 = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        step_time = (time.perf_counter() - t0) / steps
    flops = setup.model_flops() / len(setup.devices)
    xla_flops = xla_cost_flops(compiled)
    peak = device_peak_flops()
    memory = compiled.memory_analysis()
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    result = {
        "config": config.config_spec,
        "device": jax.devices()[0].device_kind,
        "num_devices": jax.device_count(),
        "host": f"{platform.machine()} {platform.processor() or ''} cpus={_cpu_count()}".strip(),
        "jax": jax.__version__,
        "batch_size": config.batch_size,
        "params": n_params,
        "compile_s": compile_s,
        "step_time_ms": 1000 * step_time,
        "examples_per_sec": config.batch_size / step_time,
        # model FLOPs (mmjax.layers.flops) per device; XLA's count beside it includes elementwise work and, on a
        # GPU, misses what runs inside cuBLAS / cuDNN calls
        "model_flops_per_step": flops,
        "xla_flops_per_step": xla_flops,
        "tflops_per_device": flops / step_time / 1e12,
        "mfu": flops / step_time / peak if peak else None,
        "peak_memory_bytes": _peak_memory(),
        # XLA's plan for the compiled step: what a larger batch needs can be read off these before running it
        "xla_temp_bytes": getattr(memory, "temp_size_in_bytes", None),
        "xla_argument_bytes": getattr(memory, "argument_size_in_bytes", None),
    }
    if data:
        result.update(_bench_data(config, setup, steps))
    return result


def _bench_data(config, setup: Setup, steps: int) -> dict[str, Any]:
    from mmjax import data as mmdata

    it = mmdata.build_pipeline(data_config(config), "train", train=True, mesh=setup.mesh)
    jax.block_until_ready(next(it))  # builds / opens the dataset and starts the readers
    t0 = time.perf_counter()
    for _ in range(steps):
        jax.block_until_ready(next(it))
    seconds = time.perf_counter() - t0
    return {"data_examples_per_sec": steps * config.batch_size / seconds}


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
