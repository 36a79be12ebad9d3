"""VideoResNet: R3D and R(2+1)D on clips of any length and size, seeing frame order, at R3D-18's parameter count."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import TOWERS, VideoResNet, build_tower, mid_width

# several channels per GroupNorm group: a group of one channel over a 1x1x1 map normalizes to a constant
TINY = dict(widths=(8, 8, 16, 16), depths=(1, 1, 1, 1), num_groups=4)


def _clip(b=2, t=5, size=40, seed=0):
    return jax.random.normal(jax.random.key(seed), (b, t, size, size, 3))


def _count(model, shape=(1, 8, 64, 64, 3)):
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def _random_params(model, x, seed=0):
    """Every parameter drawn at random without compiling init: the zero-initialized last norms would otherwise make
    every residual branch the identity and hide a branch that computes nothing."""
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), x)["params"])
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.5, s.shape), s.dtype), shapes)


def test_registered_and_r3d18_parameter_counts():
    assert TOWERS["video_resnet"] is VideoResNet
    # torchvision's r3d_18 without its 400-way classifier (33,371,472 - 205,200): the same layout, and GroupNorm
    # has BatchNorm's affine parameters
    assert _count(build_tower("video_resnet")) == 33_166_272
    assert mid_width(64, 64, (3, 3, 3)) == 144  # Tran et al. 2018's conv2_x width
    # the (2+1)-D factorisation keeps the count: only the norms between its two halves are extra
    assert _count(VideoResNet(block="2plus1d")) == 33_178_597
    r3d, r21d = _count(VideoResNet(**TINY)), _count(VideoResNet(block="2plus1d", **TINY))
    assert 0.97 < r21d / r3d < 1.03, (r3d, r21d)


@pytest.mark.parametrize("block", ["3d", "2plus1d"])
@pytest.mark.parametrize("temporal_strides, steps", [((1, 2, 2, 2), 1), ((1, 1, 1, 1), 5)])
def test_odd_clip_sizes(block, temporal_strides, steps):
    """5 frames of 40 px: space 40 -> 20 (stem) -> 20, 10, 5, 3; time halves (rounding up) where a stage strides."""
    model = VideoResNet(block=block, temporal_strides=temporal_strides, **TINY)
    x = _clip()
    out = jax.jit(model.apply)({"params": _random_params(model, x)}, x)
    assert out.tokens.shape == (2, steps * 3 * 3, 16) and out.pooled.shape == (2, 16)
    assert out.mask.shape == out.tokens.shape[:2] and out.mask.dtype == jnp.bool_ and bool(out.mask.all())
    np.testing.assert_allclose(out.pooled, out.tokens.mean(axis=1), atol=1e-5)
    assert np.isfinite(np.asarray(out.tokens)).all()


def test_parameter_names_logical_axes_and_identity_init():
    model = VideoResNet(block="2plus1d", **TINY)
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), _clip(b=1, t=4, size=16))
    params = variables["params"]
    assert set(params) == {"conv_root", "gn_root", "block1", "block2", "block3", "block4"}
    unit = params["block2"]["unit1"]
    assert set(unit) == {"conv1", "gn1", "conv2", "gn2", "conv_proj", "gn_proj"}
    assert set(unit["conv1"]) == {"spatial", "gn", "temporal"}
    mid = mid_width(8, 8, (3, 3, 3))
    assert unit["conv1"]["spatial"]["kernel"].value.shape == (1, 3, 3, 8, mid)
    assert unit["conv1"]["temporal"]["kernel"].value.shape == (3, 1, 1, mid, 8)
    assert unit["conv1"]["temporal"]["kernel"].names == ("conv_t", "conv_h", "conv_w", "conv_in", "conv_out")
    assert unit["conv_proj"]["kernel"].value.shape == (1, 1, 1, 8, 8) and unit["gn1"]["scale"].names == ("norm",)
    np.testing.assert_array_equal(nn.meta.unbox(unit["gn2"]["scale"]), 0.0)  # each unit starts as the identity
    r3d = jax.eval_shape(VideoResNet(**TINY).init, jax.random.key(0), _clip(b=1, t=4, size=16))["params"]
    assert r3d["conv_root"]["kernel"].value.shape == (3, 7, 7, 3, 8)
    assert r3d["block1"]["unit1"]["conv1"]["kernel"].value.shape == (3, 3, 3, 8, 8)


@pytest.mark.parametrize("block", ["3d", "2plus1d"])
def test_frame_order_changes_the_output(block):
    """Its kernels span time: a clip played backwards is a different input (the moving_shapes motions that are
    each other's reversal need exactly this)."""
    model = VideoResNet(block=block, temporal_strides=(1, 1, 2, 2), **TINY)
    x = _clip(t=4, size=16)
    apply = jax.jit(model.apply)
    variables = {"params": _random_params(model, x)}
    forward, backward = apply(variables, x).pooled, apply(variables, x[:, ::-1]).pooled
    assert float(jnp.abs(forward - backward).max()) > 1e-3


def test_jit_and_grad_reach_every_parameter():
    model = VideoResNet(block="2plus1d", **TINY)
    x = _clip(t=4, size=16)
    params = _random_params(model, x)

    def loss(p):
        out = model.apply({"params": p}, x)
        return jnp.sum(out.pooled**2) + jnp.sum(out.tokens**2)

    grads = jax.jit(jax.grad(loss))(params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.isfinite(np.asarray(g)).all(), jax.tree_util.keystr(path)
        assert float(jnp.abs(g).max()) > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"


def test_bfloat16_compute_keeps_float32_params():
    model = VideoResNet(**TINY)
    x = _clip(t=4, size=16)
    params = _random_params(model, x)
    out = jax.jit(VideoResNet(dtype=jnp.bfloat16, **TINY).apply)({"params": params}, x)
    assert out.tokens.dtype == jnp.bfloat16 and all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    ref = jax.jit(model.apply)({"params": params}, x).pooled
    np.testing.assert_allclose(np.asarray(out.pooled, np.float32), ref, atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [
        ({}, (2, 32, 32, 3), r"expects videos \[B, T, H, W, C\], got shape \(2, 32, 32, 3\)"),
        ({}, (2, 4, 3, 32, 32), r"expects 3 channels \(NTHWC\), got 32"),
        ({"block": "3x3"}, (2, 4, 32, 32, 3), "unknown VideoResNet block '3x3'"),
        ({"strides": (1, 2)}, (2, 4, 32, 32, 3), r"one entry per stage .*'strides': 2"),
    ],
)
def test_bad_inputs_and_fields_are_named(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(VideoResNet(**{**TINY, **kwargs}).init, jax.random.key(0), jnp.zeros(shape))
