"""Per-parameter optimizer rules: a frozen tower stays bit-identical through training, lr_mult scales updates,
and weight decay never touches norms or biases."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mmjax.config import schema
from mmjax.train.loop import Setup
from mmjax.train.optim import build_optimizer


def _optim(**kw) -> ml_collections.ConfigDict:
    """config.optim: the schema's defaults with these keys changed."""
    cfg = {"name": "sgd", "lr": 0.1, "schedule": "constant", "warmup_steps": 0, "clip_norm": 0.0, **kw}
    return ml_collections.ConfigDict({**schema.defaults(schema.OPTIM), **cfg})


PARAMS = {
    "a": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))},
    "b": {"kernel": jnp.ones((3, 2)), "norm": {"scale": jnp.ones((2,))}},
}


def _update(cfg, grads):
    tx = build_optimizer(cfg, PARAMS, total_steps=10).tx
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    return updates


def test_lr_mult_scales_the_update_of_matching_parameters():
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    updates = _update(_optim(rules=[("b/.*", {"lr_mult": 0.25})]), grads)
    np.testing.assert_allclose(updates["a"]["kernel"], -0.1)
    np.testing.assert_allclose(updates["b"]["kernel"], -0.025)
    np.testing.assert_allclose(updates["b"]["norm"]["scale"], -0.025)


def test_weight_decay_applies_to_kernels_only():
    zero_grads = jax.tree.map(jnp.zeros_like, PARAMS)
    for name in ("sgd", "adamw"):
        updates = _update(_optim(name=name, weight_decay=0.5), zero_grads)
        np.testing.assert_allclose(updates["a"]["kernel"], -0.1 * 0.5, rtol=1e-6)  # -lr * wd * param
        np.testing.assert_allclose(updates["b"]["kernel"], -0.1 * 0.5, rtol=1e-6)
        assert not np.any(updates["a"]["bias"]) and not np.any(updates["b"]["norm"]["scale"]), name


def test_rule_patterns_that_match_nothing_fail():
    with pytest.raises(ValueError, match="match no parameter: \\['image_tower/.\\*'\\]"):
        build_optimizer(_optim(rules=[("image_tower/.*", {"freeze": True})]), PARAMS, 10)


def test_frozen_tower_stays_bit_identical_while_the_other_trains(tiny_config):
    config = tiny_config("optim.rules=[('image_tower/.*', {'freeze': True})]", "optim.weight_decay=0.1")
    setup = Setup(config, jax.devices()[:1])
    state = setup.init_state()
    before = jax.device_get(state.params)
    frozen = setup.optimizer.frozen
    assert frozen["image_tower"] and all(jax.tree.leaves(frozen["image_tower"]))
    assert not any(jax.tree.leaves(frozen["text_tower"]))
    batches = setup.train_data()
    with setup.activations():
        for _ in range(3):
            state, metrics = setup.step_fn(state, next(batches))
    after = jax.device_get(state.params)
    assert float(metrics["learning_rate"]) > 0
    for a, b in zip(jax.tree.leaves(before["image_tower"]), jax.tree.leaves(after["image_tower"])):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(before["text_tower"]), jax.tree.leaves(after["text_tower"]))
    ]
    assert all(changed), "every text-tower parameter trains"


def test_a_frozen_tower_gets_no_backward_pass(tiny_config):
    """LiT's point: a locked tower costs its forward only. The compiled step of a run that freezes the image
    tower does fewer FLOPs than the same step training everything."""
    from mmjax.train.metrics import xla_cost_flops

    def step_flops(*overrides):
        setup = Setup(tiny_config(*overrides), jax.devices()[:1])
        state = setup.init_state()
        batch = jax.device_put(setup.task.step_batch(setup.config.batch_size), setup.batch_sharding)
        with setup.activations():
            return xla_cost_flops(setup.step_fn.lower(state, batch).compile())

    trained = step_flops()
    frozen = step_flops("optim.rules=[('image_tower/.*', {'freeze': True})]")
    assert frozen < 0.9 * trained, (frozen, trained)
