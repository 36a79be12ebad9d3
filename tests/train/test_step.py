"""The train step: gradient accumulation over k micro-batches equals one step on the k-times batch."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mmjax.train.optim import build_optimizer
from mmjax.train.state import TrainState
from mmjax.train.step import make_train_step


class _Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))[:, 0]


def _regression_loss(params, batch, rng):
    """Mean squared error over the examples of `batch` (a per-example mean, so micro-batch means average)."""
    del rng
    pred = _Mlp().apply({"params": params}, batch["x"])
    loss = jnp.mean((pred - batch["y"]) ** 2)
    return loss, {"mae": jnp.mean(jnp.abs(pred - batch["y"]))}


def _step_once(grad_accum_steps: int, batch):
    params = _Mlp().init(jax.random.key(0), batch["x"][:1])["params"]
    # Plain SGD: the update is -lr * gradient, so equal params mean equal gradients (Adam's first step would
    # only compare their signs).
    cfg = ml_collections.ConfigDict({"name": "sgd", "lr": 0.1, "schedule": "constant", "clip_norm": 0.0})
    tx, schedule = build_optimizer(cfg, params, total_steps=10)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), jax.random.key_data(jax.random.key(1)))
    step = jax.jit(make_train_step(_regression_loss, tx, schedule, grad_accum_steps))
    return step(state, batch)


def test_accumulating_four_micro_batches_matches_one_big_batch():
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(32, 8)).astype(np.float32), "y": rng.normal(size=(32,)).astype(np.float32)}
    one_state, one = _step_once(1, batch)
    acc_state, acc = _step_once(4, batch)
    for key in ("loss", "mae", "grad_norm"):
        np.testing.assert_allclose(acc[key], one[key], rtol=1e-5, err_msg=key)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), acc_state.params, one_state.params
    )
    assert int(acc_state.step) == 1
    # Accumulating over halves of a batch whose halves differ is not the same as one step on either half.
    _, half = _step_once(1, jax.tree.map(lambda x: x[:8], batch))
    assert abs(float(half["loss"]) - float(one["loss"])) > 1e-3
