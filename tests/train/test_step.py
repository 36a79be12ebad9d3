"""The train step: gradient accumulation over k micro-batches equals one step on the k-times batch."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mmjax.config import schema
from mmjax.train.optim import build_optimizer
from mmjax.train.state import TrainState
from mmjax.train.step import accumulate_gradients, make_train_step


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


def _batch(n: int = 32) -> dict:
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(n, 8)).astype(np.float32), "y": rng.normal(size=(n,)).astype(np.float32)}


def _init(batch):
    return _Mlp().init(jax.random.key(0), batch["x"][:1])["params"]


def _step_once(grad_accum_steps: int, batch):
    params = _init(batch)
    # Plain SGD: the update is -lr * gradient, so equal params mean equal gradients (Adam's first step would
    # only compare their signs).
    plain = {"name": "sgd", "lr": 0.1, "schedule": "constant", "clip_norm": 0.0}
    cfg = ml_collections.ConfigDict({**schema.defaults(schema.OPTIM), **plain})
    tx, schedule, _ = build_optimizer(cfg, params, total_steps=10)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), jax.random.key_data(jax.random.key(1)))
    step = jax.jit(make_train_step(_regression_loss, tx, schedule, grad_accum_steps))
    return step(state, batch)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_accumulate_gradients_over_k_micro_batches_equals_one_call_on_the_whole_batch(k):
    """For a per-example-mean loss: the same mean loss, metrics and gradients as value_and_grad on the batch."""
    batch = _batch()
    params = _init(batch)
    rng = jax.random.key(1)
    (loss, metrics), grads = jax.value_and_grad(_regression_loss, has_aux=True)(params, batch, rng)
    acc_loss, acc_metrics, acc_grads = accumulate_gradients(_regression_loss, params, batch, rng, k)
    assert jax.tree.structure(acc_grads) == jax.tree.structure(grads)
    chex.assert_trees_all_close((acc_loss, acc_metrics, acc_grads), (loss, metrics, grads), atol=1e-6, rtol=1e-6)


def test_a_train_step_accumulating_four_micro_batches_matches_one_big_batch():
    batch = _batch()
    one_state, one = _step_once(1, batch)
    acc_state, acc = _step_once(4, batch)
    for key in ("loss", "mae", "grad_norm"):
        chex.assert_trees_all_close(acc[key], one[key], atol=1e-6, rtol=1e-6, custom_message=key)
    chex.assert_trees_all_close(acc_state.params, one_state.params, atol=1e-6, rtol=1e-6)
    assert int(acc_state.step) == int(one_state.step) == 1
    # and the step moved the params at all (else equal params would say nothing about the gradients)
    assert not np.allclose(one_state.params["Dense_0"]["kernel"], _init(batch)["Dense_0"]["kernel"])


def test_cpu_fast_compile_reaches_every_jit_of_a_run(tiny_config):
    """Every `tiny` variant sets cpu_fast_compile: the step, the init and the evaluators compile without XLA:CPU's
    optimisation passes; a full-size config keeps them."""
    from mmjax.train.evaluate import build_evaluators
    from mmjax.train.loop import Setup
    from mmjax.train.step import compiler_options

    setup = Setup(tiny_config(), jax.devices()[:1])
    assert setup.config.cpu_fast_compile
    assert setup.compiler_options == {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
    evaluators = build_evaluators(setup.config, setup.task).values()
    assert evaluators and all(e.compiler_options == setup.compiler_options for e in evaluators)
    assert compiler_options(tiny_config("cpu_fast_compile=False")) is None
