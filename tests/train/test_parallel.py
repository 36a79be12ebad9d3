"""Data-parallel, FSDP and FSDP + tensor-parallel training on 8 fake CPU devices match one device step for step,
and FSDP stores about 1/8 of the parameter and optimizer bytes on each device (measured from the shards)."""

import collections

import jax
import numpy as np
import pytest
from train_testing import BASELINE_STEPS, read_metrics

from mmjax.train.loop import Setup

MESHES = {
    "dp": ("dp", {"data": 8, "fsdp": 1, "tensor": 1}),
    "fsdp": ("fsdp", {"data": 1, "fsdp": 8, "tensor": 1}),
    "fsdp_tp": ("fsdp_tp", {"data": 2, "fsdp": 2, "tensor": 2}),
}


@pytest.fixture(scope="module")
def sharded_run(tiny_config):
    """name -> (per-step losses, final train state) of the tiny config on all 8 devices, run once per mesh."""
    runs = {}

    def run(name):
        if name not in runs:
            preset, mesh = MESHES[name]
            config = tiny_config(f"sharding={preset}", *(f"mesh.{k}={v}" for k, v in mesh.items()))
            # The loop's own pieces (mesh, sharded init, pipeline, compiled step), without eval and checkpoints.
            setup = Setup(config, jax.devices())
            assert dict(setup.mesh.shape) == mesh
            state, batches, losses = setup.init_state(), setup.train_data(), []
            with setup.activations():
                for _ in range(BASELINE_STEPS):
                    state, metrics = setup.step_fn(state, next(batches))
                    losses.append(float(metrics["loss"]))
            runs[name] = losses, state
        return runs[name]

    return run


@pytest.mark.parametrize("name", list(MESHES))
def test_same_loss_as_one_device_at_every_step(name, sharded_run, baseline_run):
    _, workdir, _ = baseline_run
    reference = [r["loss"] for r in read_metrics(workdir)]
    assert len(reference) == BASELINE_STEPS, "the one-device run logs every step"
    losses, _ = sharded_run(name)
    np.testing.assert_allclose(losses, reference, rtol=1e-5, atol=0)
    assert len(set(reference)) == BASELINE_STEPS, "the loss moves, so equal losses mean equal updates"


def _bytes_per_device(tree) -> tuple[int, dict]:
    """(total logical bytes, {device: bytes of the shards it holds}) from the arrays' actual shards."""
    total, per_device = 0, collections.Counter()
    for x in jax.tree.leaves(tree):
        total += x.size * x.dtype.itemsize
        for shard in x.addressable_shards:
            per_device[shard.device] += shard.data.nbytes
    return total, per_device


def test_fsdp_holds_an_eighth_of_params_and_optimizer_state_per_device(sharded_run):
    _, state = sharded_run("fsdp")
    for part in ("params", "opt_state"):
        total, per_device = _bytes_per_device(getattr(state, part))
        assert len(per_device) == 8
        # Almost all bytes sit in kernels and embeddings whose `embed` dimension divides by 8; the rest
        # (norm scales, biases, logit scale) are replicated and account for the margin.
        assert max(per_device.values()) <= total / 8 * 1.25, (part, total, dict(per_device))
        assert sum(per_device.values()) <= total * 1.25, "shards are not replicas"
