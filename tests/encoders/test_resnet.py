import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders.resnet import RESNET_DEPTHS, ResNet, weight_standardize


def _images(b=2, size=32, c=3, seed=0):
    return jax.random.normal(jax.random.key(seed), (b, size, size, c), jnp.float32)


def _random_variables(model, images, seed=0):
    """Variables with the real tree structure and random values, without compiling `init`.

    Compiling a ResNet's init takes several times longer on CPU than its forward pass (threefry random bits
    for every kernel), so tests that only need some parameter values take the shapes from jax.eval_shape.
    """
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), images))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.5, s.shape), s.dtype), shapes)


@pytest.fixture(scope="module")
def r18():
    """A ResNet-18 at width 8 with its real (jitted, compiled once) init, and 64x64 images."""
    model = ResNet(depth=18, width=8)
    images = _images(size=64)
    # An rbg key: the same initializers, but XLA:CPU compiles its random bits ~4x faster than threefry's.
    return model, jax.jit(model.init)(jax.random.key(0, impl="rbg"), images), images


def _param_count(module, size=224):
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize(
    "depth, features, size, grid", [(18, 64, 32, 1), (18, 64, 64, 2), (50, 256, 64, 2), (34, 64, 32, 1)]
)
def test_output_shapes(depth, features, size, grid):
    model = ResNet(depth=depth, width=8)
    assert model.features == features
    images = _images(size=size)
    out = model.apply(_random_variables(model, images), images)
    assert out.tokens.shape == (2, grid * grid, features)
    assert out.mask.shape == (2, grid * grid) and out.mask.dtype == jnp.bool_ and bool(out.mask.all())
    assert out.pooled.shape == (2, features)
    assert np.isfinite(np.asarray(out.tokens)).all()


def test_real_init_and_jitted_apply(r18):
    model, variables, images = r18
    out = jax.jit(model.apply)(variables, images)
    assert out.tokens.shape == (2, 4, 64) and out.pooled.shape == (2, 64)
    assert np.isfinite(np.asarray(out.tokens)).all() and float(jnp.abs(out.tokens).max()) > 0
    # Images of another size and shape need no new parameters (no position embeddings).
    wide = jnp.zeros((1, 64, 96, 3))
    assert model.apply(variables, wide).tokens.shape == (1, 2 * 3, 64)


def test_gap_pooled_is_mean_of_tokens(r18):
    model, variables, images = r18
    out = model.apply(variables, images)
    np.testing.assert_allclose(out.pooled, out.tokens.mean(axis=1), atol=1e-6)


def test_map_pooling_uses_learned_probe():
    model = ResNet(depth=18, width=8, pooling="map", num_heads=4)
    images = _images(size=64)
    variables = _random_variables(model, images)
    assert set(variables["params"]["map_head"]) == {"probe", "attn", "ln", "mlp"}
    out = model.apply(variables, images)
    assert out.pooled.shape == (2, 64)
    assert not np.allclose(out.pooled, out.tokens.mean(axis=1), atol=1e-3)


@pytest.mark.parametrize("depth, expected", [(18, 11_176_512), (50, 23_508_032)])
def test_standard_parameter_counts(depth, expected):
    # torchvision's resnet18/resnet50 without the fc head; GroupNorm has BatchNorm's affine parameters, so the
    # BiT-style tower matches exactly (BiT-R50x1 is ~23.5M without its head).
    assert _param_count(ResNet(depth=depth, width=64)) == expected


def test_parameter_names_and_logical_axes():
    model = ResNet(depth=50, width=8)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    assert set(shapes) == {"conv_root", "gn_root", "block1", "block2", "block3", "block4"}
    assert [len(shapes[f"block{s}"]) for s in range(1, 5)] == list(RESNET_DEPTHS[50][1])
    unit = shapes["block2"]["unit1"]
    assert set(unit) == {"conv1", "gn1", "conv2", "gn2", "conv3", "gn3", "conv_proj", "gn_proj"}
    assert "conv_proj" not in shapes["block2"]["unit2"]
    kernel = unit["conv2"]["kernel"]
    assert isinstance(kernel, nn.LogicallyPartitioned)
    assert kernel.names == ("conv_h", "conv_w", "conv_in", "conv_out")
    assert kernel.value.shape == (3, 3, 16, 16)
    assert unit["gn1"]["scale"].names == ("norm",)


def test_units_start_as_identity_branches(r18):
    # The zero-initialized last GroupNorm scale means each residual branch adds nothing at init.
    _, variables, _ = r18
    params = nn.meta.unbox(variables["params"])
    for stage in ("block1", "block4"):
        np.testing.assert_array_equal(params[stage]["unit2"]["gn2"]["scale"], 0.0)
        np.testing.assert_array_equal(params[stage]["unit2"]["gn1"]["scale"], 1.0)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_weight_standardization():
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 4, 5)) * 3.0 + 2.0
    w = weight_standardize(kernel)
    np.testing.assert_allclose(w.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(w.std(axis=(0, 1, 2)), 1.0, atol=1e-4)
    # The output is invariant to a per-output-channel affine change of the raw kernel.
    np.testing.assert_allclose(weight_standardize(kernel * 7.0 - 1.0), w, atol=1e-4)


def test_gradients_reach_every_parameter():
    model = ResNet(depth=18, width=8, pooling="map", num_heads=4)
    images = _images(size=64)
    # Random (non-zero) final-norm scales so every residual branch contributes; init makes them zero.
    params = _random_variables(model, images)["params"]

    def loss(p):
        out = model.apply({"params": p}, images)
        return jnp.sum(out.pooled**2) + jnp.sum(out.tokens**2)

    grads = jax.jit(jax.grad(loss))(params)  # jitted: eager backprop dispatches op by op, ~3x slower
    flat = jax.tree_util.tree_leaves_with_path(grads)
    assert len(flat) == len(jax.tree.leaves(params))
    for path, g in flat:
        assert np.isfinite(np.asarray(g)).all(), jax.tree_util.keystr(path)
        assert float(jnp.abs(g).max()) > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"


def test_bfloat16_compute_keeps_float32_params(r18):
    _, variables, images = r18
    model = ResNet(depth=18, width=8, dtype=jnp.bfloat16)
    out = model.apply(variables, images)
    assert out.tokens.dtype == jnp.bfloat16
    ref = ResNet(depth=18, width=8).apply(variables, images)
    np.testing.assert_allclose(np.asarray(out.pooled, np.float32), ref.pooled, atol=0.1, rtol=0.05)


def test_same_function_in_train_and_eval(r18):
    model, variables, images = r18
    a = model.apply(variables, images, train=True)
    b = model.apply(variables, images, train=False)
    np.testing.assert_array_equal(a.tokens, b.tokens)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((2, 32, 32), r"\[B, H, W, C\], got shape \(2, 32, 32\)"),
        ((2, 32, 32, 1), r"expects 3 channels \(NHWC\), got 1"),
        ((2, 3, 32, 32), r"expects 3 channels \(NHWC\), got 32"),
    ],
)
def test_bad_input_shapes(shape, match):
    model = ResNet(depth=18, width=8)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))


def test_custom_channel_count():
    model = ResNet(depth=18, width=8, channels=1)
    images = jnp.zeros((1, 32, 32, 1))
    assert model.apply(_random_variables(model, images), images).pooled.shape == (1, 64)


def test_bad_depth_and_pooling():
    with pytest.raises(ValueError, match=r"unsupported ResNet depth 42; supported: \[18, 26, 34, 50"):
        jax.eval_shape(ResNet(depth=42, width=8).init, jax.random.key(0), _images())
    with pytest.raises(ValueError, match="unknown pooling 'tok'"):
        jax.eval_shape(ResNet(depth=18, width=8, pooling="tok").init, jax.random.key(0), _images())


def test_fsdp_rules_split_every_conv_kernel():
    from mmjax import sharding

    mesh = sharding.make_mesh({"fsdp": 8})
    shapes = jax.eval_shape(ResNet(depth=50, width=64).init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    shardings = sharding.logical_to_shardings(shapes, mesh, "fsdp")
    flat = jax.tree_util.tree_leaves_with_path(nn.meta.unbox(shapes))
    kernels = [(p, s) for (p, _), s in zip(flat, jax.tree.leaves(shardings), strict=True) if "kernel" in str(p)]
    assert len(kernels) == 53  # every conv of ResNet-50: stem + 16 units x 3 + 4 projections
    for path, s in kernels:  # output channels (64 ... 2048) split 8 ways
        assert s.spec == jax.sharding.PartitionSpec(None, None, None, "fsdp"), jax.tree_util.keystr(path)
