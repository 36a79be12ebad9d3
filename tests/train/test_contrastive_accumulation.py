"""Contrastive training with gradient accumulation keeps the whole batch's negatives (GradCache): loss and gradients
equal the whole batch's, while the compiled step holds one micro-batch's activations."""

import chex
import jax
import numpy as np
import pytest

from mmjax.train.loop import Setup


def _setup(tiny_config, *overrides):
    return Setup(tiny_config("model.dtype=float32", *overrides), jax.devices()[:1])


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
@pytest.mark.parametrize("steps", [2, 4])
def test_accumulated_loss_and_gradients_equal_the_whole_batch(tiny_config, loss, steps):
    setup = _setup(tiny_config, f"model.loss={loss}")
    state = setup.init_state()
    batch = jax.device_get(next(setup.train_data()))
    rng = jax.random.key(3)
    (want_loss, want_metrics), want = jax.value_and_grad(setup.task.loss, has_aux=True)(state.params, batch, rng)
    got_loss, got_metrics, got = jax.jit(setup.task.accumulate, static_argnums=3)(state.params, batch, rng, steps)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)  # float32 sums in another order
    np.testing.assert_allclose(got_metrics["logit_scale"], want_metrics["logit_scale"], rtol=1e-6)
    assert float(optax_norm(want)) > 0


def optax_norm(tree):
    return np.sqrt(sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(tree)))


def test_a_train_step_with_micro_batches_matches_one_big_batch(tiny_config):
    one, four = _setup(tiny_config), _setup(tiny_config, "optim.grad_accum_steps=4")
    batch = next(one.train_data())
    with one.activations():
        a, _ = one.step_fn(one.init_state(), batch)
        b, _ = four.step_fn(four.init_state(), batch)
    chex.assert_trees_all_close(jax.device_get(a.params), jax.device_get(b.params), rtol=1e-5, atol=1e-5)


def test_micro_batches_lower_the_compiled_steps_memory(tiny_config):
    """XLA's memory analysis of the compiled step: temporaries shrink with k micro-batches (figures in the
    closing note of the change that added this)."""

    def temp_bytes(k: int) -> int:
        setup = _setup(tiny_config, "batch_size=256", f"optim.grad_accum_steps={k}")
        batch = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=setup.batch_sharding),
            setup.task.step_batch(256),
        )
        with setup.activations():
            compiled = setup.step_fn.lower(setup.abstract_state, batch).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    whole, micro = temp_bytes(1), temp_bytes(4)
    print(f"temp bytes: whole batch {whole:,}, 4 micro-batches {micro:,} ({micro / whole:.2f}x)")
    assert micro < 0.6 * whole, (whole, micro)
