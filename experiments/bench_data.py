"""Examples per second of the demo input pipeline, as `configs/clip_shapes.py` configures it, on global jax.Arrays.

    python experiments/bench_data.py [--workers 0 2] [--threads 2] [--batches 60] [--data_dir DIR]

That is CLIP on shapes: 64x64 images, no crop or flip, CLIP tokenizer T=64, batch 128. Compare with the train
step of the same config, timed on the same machine by
`mmjax bench --config configs/clip_shapes.py --config.data.data_dir=DIR` (`--data` also prints this pipeline's
rate). The first run prepares the shapes dataset (about 1,000 scenes/s on one core); later runs reuse it.
Reported numbers are in experiments/data_pipeline.md; note the load average (`uptime`) next to any number.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import jax
from absl import flags

from mmjax import config as mmconfig
from mmjax.data import build_pipeline
from mmjax.train.inputs import data_config

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"


def demo_data_config(data_dir: str):
    """`config.data` of the demo with the experiment's global batch size and seed, as the trainer builds it."""
    config = mmconfig.load_config(str(CONFIGS / "clip_shapes.py"), [f"data.data_dir={data_dir}"])
    return data_config(config)


def measure(data_dir: str, workers: int, threads: int, batches: int) -> float:
    config = demo_data_config(data_dir)
    config.update(worker_count=workers, read_threads=threads)
    mesh = jax.make_mesh((len(jax.devices()),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    it = build_pipeline(config, "train", mesh=mesh)
    for _ in range(3):  # warm up: worker start-up, thread pools, first reads
        jax.block_until_ready(next(it))
    start = time.perf_counter()
    for _ in range(batches):
        jax.block_until_ready(next(it))
    rate = batches * config.batch_size / (time.perf_counter() - start)
    it.close()
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--data_dir", default="/tmp/mmjax_bench")
    args = parser.parse_args()
    flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags
    config = demo_data_config(args.data_dir)
    described = (
        f"shapes {config.image_size}x{config.image_size}, crop={config.random_crop}, flip={config.flip}, "
        f"{config.tokenizer.kind} T={config.tokenizer.max_length}, batch {config.batch_size}"
    )
    for workers in args.workers:
        rate = measure(args.data_dir, workers, args.threads, args.batches)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{described}, workers={workers} threads={args.threads}: {rate:,.0f} examples/s (load {load})")


if __name__ == "__main__":
    from mmjax.cli import run_script

    run_script(main)
