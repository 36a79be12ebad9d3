"""Examples per second of the demo input pipeline: CLIP on shapes, 64x64, batch 256, global jax.Arrays.

    python experiments/bench_data.py [--workers 0 2] [--threads 2] [--batches 30] [--data_dir DIR]

The first run prepares the shapes dataset (about 1,000 scenes/s on one core); later runs reuse it. Reported
numbers (this repo's 2-core CPU box) are in experiments/data_pipeline.md.
"""

from __future__ import annotations

import argparse
import time

import jax
from absl import flags

from mmjax.data import build_pipeline, default_config


def measure(workers: int, threads: int, batches: int, data_dir: str, num_train: int) -> float:
    config = default_config()
    config.update(data_dir=data_dir, batch_size=256, image_size=64)
    config.update(worker_count=workers, read_threads=threads)
    config.shapes.update(num_train=num_train, num_validation=256, num_test=256, num_compositional=256)
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
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--num_train", type=int, default=10_000)
    parser.add_argument("--data_dir", default="/tmp/mmjax_bench")
    args = parser.parse_args()
    flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags
    for workers in args.workers:
        rate = measure(workers, args.threads, args.batches, args.data_dir, args.num_train)
        setting = f"workers={workers} threads={args.threads}"
        print(f"shapes 64x64, CLIP T=77, batch 256, {setting}: {rate:,.0f} examples/s")


if __name__ == "__main__":
    main()
