"""SigLIP's chunked ring (`model.loss_impl=ring`): the global batch's contrastive loss with texts passed device to
device, equal to the global loss, holding (B/n)^2 logits per device instead of B^2/n."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mmjax import losses, sharding
from mmjax.train.loop import Setup


def _mesh(shape: dict[str, int]):
    n = int(np.prod(list(shape.values())))
    auto = (jax.sharding.AxisType.Auto,) * len(shape)
    return jax.make_mesh(tuple(shape.values()), tuple(shape), axis_types=auto, devices=jax.devices()[:n])


def _embeddings(b: int, d: int = 16):
    a, c = jax.random.split(jax.random.key(0))
    images = jax.random.normal(a, (b, d))
    texts = images + 1.5 * jax.random.normal(c, (b, d))  # related pairs: accuracies away from 0 and 1
    unit = lambda x: x / jnp.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return unit(images), unit(texts)


def _global(kind, images, texts, scale, bias):
    logits = losses.contrastive_logits(images, texts, scale, bias)
    return (losses.sigmoid_contrastive_loss if kind == "sigmoid" else losses.softmax_contrastive_loss)(logits)


@pytest.mark.parametrize("kind,bias", [("sigmoid", -10.0), ("softmax", None)])
def test_ring_equals_the_global_loss_metrics_and_gradients_on_8_devices(kind, bias):
    images, texts = _embeddings(64)
    scale = jnp.float32(10.0)

    def ring(i, t, s):
        return losses.ring_contrastive_loss(i, t, s, bias, kind=kind)

    with sharding.activation_context(_mesh({"data": 4, "fsdp": 2}), "dp"):
        (got, got_metrics), got_grads = jax.jit(jax.value_and_grad(ring, argnums=(0, 1, 2), has_aux=True))(
            images, texts, scale
        )
    (want, want_metrics), want_grads = jax.value_and_grad(
        lambda *a: _global(kind, *a, bias), argnums=(0, 1, 2), has_aux=True
    )(images, texts, scale)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    chex.assert_trees_all_close(got_grads, want_grads, atol=1e-5, rtol=1e-5)
    assert set(got_metrics) == set(want_metrics)
    for name in want_metrics:
        np.testing.assert_allclose(got_metrics[name], want_metrics[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert 0 < float(want_metrics["i2t_accuracy"]) < 1


def test_without_a_mesh_the_ring_is_the_global_loss():
    images, texts = _embeddings(8)
    got, _ = losses.ring_contrastive_loss(images, texts, 10.0, -10.0)
    np.testing.assert_allclose(got, _global("sigmoid", images, texts, 10.0, -10.0)[0], rtol=1e-6)


def test_ring_rejects_a_batch_the_devices_cannot_split():
    images, texts = _embeddings(12)
    with sharding.activation_context(_mesh({"data": 8}), "dp"):
        with pytest.raises(ValueError, match="divisible by the 8 devices"):
            jax.jit(lambda i, t: losses.ring_contrastive_loss(i, t, 10.0))(images, texts)


def _temp_bytes(kind: str, impl: str, n: int, b: int = 2048, d: int = 8) -> int:
    """XLA's temporaries for the loss and its gradient, compiled for n devices on the data axis."""
    mesh = _mesh({"data": n})
    rows = jax.ShapeDtypeStruct((b, d), jnp.float32, sharding=NamedSharding(mesh, P("data", None)))
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=NamedSharding(mesh, P()))
    if impl == "ring":
        fn = lambda i, t, s: losses.ring_contrastive_loss(i, t, s, kind=kind)[0]  # noqa: E731
    else:
        fn = lambda i, t, s: _global(kind, i, t, s, None)[0]  # noqa: E731
    with sharding.activation_context(mesh, "dp"):
        compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2))).lower(rows, rows, scalar).compile()
    return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("kind", ["sigmoid", "softmax"])
def test_per_device_logits_memory_is_a_block_not_a_slab(kind):
    """B = 2048 pairs: the ring's temporaries are a few (B/n)^2 blocks whatever n, so doubling the devices
    quarters them; the global loss keeps B/n full rows (B^2/n), so doubling the devices only halves it."""
    b = 2048
    block = lambda n: (b // n) ** 2 * 4  # noqa: E731  float32 bytes of one device's block of logits
    ring = {n: _temp_bytes(kind, "ring", n) for n in (4, 8)}
    glob = {n: _temp_bytes(kind, "global", n) for n in (4, 8)}
    assert ring[8] <= 10 * block(8), f"ring: {ring[8] / block(8):.1f} blocks of (B/n)^2"
    assert glob[8] >= 8 * block(8), f"global: {glob[8] / block(8):.1f} blocks: expected at least a B^2/n slab"
    assert 3.5 <= ring[4] / ring[8] <= 4.5, ring  # quadratic in 1/n
    assert 1.8 <= glob[4] / glob[8] <= 2.2, glob  # linear in 1/n
    assert glob[8] >= 3 * ring[8]


def test_a_train_step_with_the_ring_matches_the_global_one(tiny_config):
    """The tiny CLIP config on 8 devices (2 pairs each): the same parameters after one step either way."""
    params = {}
    for impl in ("global", "ring"):
        config = tiny_config("model.dtype=float32", "model.loss=sigmoid", f"model.loss_impl={impl}", "mesh.data=8")
        setup = Setup(config, jax.devices()[:8])
        with setup.activations():
            state, metrics = setup.step_fn(setup.init_state(), next(setup.train_data()))
        params[impl] = jax.device_get(state.params)
        assert np.isfinite(float(metrics["loss"]))
    chex.assert_trees_all_close(params["ring"], params["global"], rtol=1e-5, atol=1e-6)


def test_the_ring_counts_the_global_losss_flops():
    """Model FLOPs count a shard_map body once per device: the ring does the global loss's work, split n ways."""
    from mmjax.layers.flops import function_flops

    images, texts = _embeddings(64)
    with sharding.activation_context(_mesh({"data": 8}), "dp"):
        ring = function_flops(lambda i, t: losses.ring_contrastive_loss(i, t, 10.0)[0], images, texts)
    assert ring == function_flops(lambda i, t: _global("sigmoid", i, t, 10.0, None)[0], images, texts)
