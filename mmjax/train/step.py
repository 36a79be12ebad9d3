"""The train step: a pure function (state, batch) -> (state, metrics), model-agnostic.

The task supplies `loss(params, batch, rng) -> (loss, metrics)`; everything here is the same for every model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from mmjax.train.state import TrainState

LossFn = Callable[[dict, dict, jax.Array], tuple[jax.Array, dict]]


def split_micro(batch: dict, k: int) -> dict:
    """Every array [B, ...] -> [k, B / k, ...]: k equal micro-batches."""

    def split(x):
        if x.shape[0] % k:
            raise ValueError(f"batch of {x.shape[0]} does not split into {k} micro-batches")
        return x.reshape(k, x.shape[0] // k, *x.shape[1:])

    return jax.tree.map(split, batch)


def accumulate_gradients(loss_fn: LossFn, params, batch, rng, steps: int):
    """Mean loss, metrics and gradients over `steps` equal micro-batches, computed one after another.

    For a loss that is a mean over examples this equals the gradient of the whole batch while holding only one
    micro-batch of activations. (A contrastive loss sees only its micro-batch's negatives: that is the usual
    meaning of accumulation and is documented with the task.)
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if steps == 1:
        (loss, metrics), grads = grad_fn(params, batch, rng)
        return loss, metrics, grads
    micro = split_micro(batch, steps)

    def body(carry, xs):
        i, mb = xs
        (loss, metrics), grads = grad_fn(params, mb, jax.random.fold_in(rng, i))
        total = jax.tree.map(jnp.add, carry, (loss, metrics, grads))
        return total, None

    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[0], micro), rng))
    zeros = (zeros[0][0], zeros[0][1], zeros[1])
    total, _ = jax.lax.scan(body, zeros, (jnp.arange(steps), micro))
    return jax.tree.map(lambda x: x / steps, total)


# XLA:CPU's optimisation passes take most of a small model's compile time and pay off only over many steps
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def compiler_options(config) -> dict | None:
    """The XLA options every jit of a run compiles with (`cpu_fast_compile` on a CPU), else None."""
    return dict(_FAST_COMPILE) if config.cpu_fast_compile and jax.default_backend() == "cpu" else None


def stop_frozen(params, frozen):
    """`params` with `stop_gradient` on the leaves `frozen` (a pytree of bools like them, or None) marks."""
    if frozen is None or not any(jax.tree.leaves(frozen)):
        return params
    return jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, frozen)


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    schedule,
    grad_accum_steps: int = 1,
    frozen=None,
    accumulate: Callable | None = None,
):
    """-> step(state, batch) -> (state, metrics).

    frozen: optional pytree of bools like the params (`Optimizer.frozen`). Frozen parameters get no gradient
    (stop_gradient), so XLA drops their backward pass: a locked tower costs only its forward (LiT).
    accumulate: a task's own accumulation over `grad_accum_steps` micro-batches, `(params, batch, rng, steps, *,
    freeze) -> (loss, metrics, grads)`, for losses that are not a mean over examples (a contrastive loss needs the
    whole batch's negatives); default: `accumulate_gradients`.

    A step whose loss or gradient norm is not finite leaves params and optimizer state unchanged and reports
    `nonfinite=1`; the loop decides whether that stops the run (the default) or is skipped.
    """

    freeze = functools.partial(stop_frozen, frozen=frozen)

    def differentiated(params, batch, rng):
        return loss_fn(freeze(params), batch, rng)

    def step(state: TrainState, batch: dict):
        rng = state.step_key()
        if accumulate is not None and grad_accum_steps > 1:  # the task's own accumulation (contrastive: GradCache)
            loss, metrics, grads = accumulate(state.params, batch, rng, grad_accum_steps, freeze=freeze)
        else:
            loss, metrics, grads = accumulate_gradients(differentiated, state.params, batch, rng, grad_accum_steps)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = state.replace(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
        )
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": grad_norm,
            "learning_rate": schedule(state.step),
            "nonfinite": 1 - finite.astype(jnp.int32),
        }
        return new_state, metrics

    return step
