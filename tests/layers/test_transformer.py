import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.layers import Block, Encoder, Mlp, causal_mask, get_activation


def _stack_layers(params, n):
    """Unscanned layer_i trees -> the scanned `layers` tree with a leading [n] axis."""
    return {"layers": jax.tree.map(lambda *xs: jnp.stack(xs), *[params[f"layer_{i}"] for i in range(n)])}


def test_scan_and_remat_compute_the_same_function():
    x = jax.random.normal(jax.random.key(1), (2, 5, 12))
    mask = causal_mask(5)
    plain = Encoder(num_layers=3, num_heads=3, mlp_dim=20)
    params = nn.meta.unbox(plain.init(jax.random.key(0), x, mask)["params"])
    want = plain.apply({"params": params}, x, mask)
    want_grad = jax.grad(lambda p: plain.apply({"params": p}, x, mask).sum())(params)

    scanned = Encoder(num_layers=3, num_heads=3, mlp_dim=20, scan=True, remat=True)
    stacked = _stack_layers(params, 3)
    assert jax.tree.map(jnp.shape, stacked) == jax.tree.map(
        jnp.shape, nn.meta.unbox(scanned.init(jax.random.key(0), x, mask)["params"])
    )
    np.testing.assert_allclose(scanned.apply({"params": stacked}, x, mask), want, atol=1e-5)
    grad = jax.grad(lambda p: scanned.apply({"params": p}, x, mask).sum())(stacked)
    np.testing.assert_allclose(
        grad["layers"]["mlp"]["fc1"]["kernel"][1], want_grad["layer_1"]["mlp"]["fc1"]["kernel"], atol=1e-4
    )

    rematted = Encoder(num_layers=3, num_heads=3, mlp_dim=20, remat=True)
    np.testing.assert_allclose(rematted.apply({"params": params}, x, mask), want, atol=1e-6)


def test_scanned_params_carry_the_layers_axis_name():
    enc = Encoder(num_layers=2, num_heads=2, mlp_dim=8, scan=True)
    boxed = enc.init(jax.random.key(0), jnp.ones((1, 3, 4)))["params"]
    assert boxed["layers"]["mlp"]["fc1"]["kernel"].names == ("layers", "embed", "mlp")


def test_pre_and_post_norm_blocks():
    x = jax.random.normal(jax.random.key(1), (2, 4, 8)) * 3 + 1
    post = Block(num_heads=2, mlp_dim=16, pre_norm=False)
    y = post.apply(post.init(jax.random.key(0), x), x)
    # post-LN ends in a LayerNorm with unit scale and zero bias at init: each token is standardized
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(-1), 1.0, atol=1e-2)
    pre = Block(num_heads=2, mlp_dim=16, pre_norm=True)
    z = pre.apply(pre.init(jax.random.key(0), x), x)
    assert not np.allclose(z.mean(-1), 0.0, atol=1e-2)  # the residual stream is left unnormalized


def test_activations():
    x = jnp.linspace(-3, 3, 7)
    np.testing.assert_allclose(get_activation("quick_gelu")(x), x * jax.nn.sigmoid(1.702 * x), atol=1e-6)
    np.testing.assert_allclose(get_activation("gelu")(x), jax.nn.gelu(x, approximate=False), atol=1e-6)
    with pytest.raises(ValueError, match="supported"):
        get_activation("swishy")


def test_mlp_shapes_and_logical_names():
    mlp = Mlp(mlp_dim=10, out_dim=3)
    v = mlp.init(jax.random.key(0), jnp.ones((2, 4, 6)))
    assert mlp.apply(v, jnp.ones((2, 4, 6))).shape == (2, 4, 3)
    assert v["params"]["fc1"]["kernel"].names == ("embed", "mlp")
    assert v["params"]["fc2"]["kernel"].names == ("mlp", "embed")


def test_bfloat16_compute_keeps_float32_params():
    enc = Encoder(num_layers=1, num_heads=2, mlp_dim=8, dtype=jnp.bfloat16)
    v = enc.init(jax.random.key(0), jnp.ones((1, 3, 4)))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nn.meta.unbox(v)))
    assert enc.apply(v, jnp.ones((1, 3, 4))).dtype == jnp.bfloat16
