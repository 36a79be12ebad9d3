import contextlib
import logging

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mmjax import sharding
from mmjax.layers import Encoder, Mlp, dense


@pytest.fixture(scope="module", autouse=True)
def _eight_devices():
    assert jax.device_count() == 8, "tests/conftest.py sets XLA_FLAGS=--xla_force_host_platform_device_count=8"


def _spec(names, shape, mesh, preset, table="params"):
    rules = getattr(sharding.get_rules(preset), table)
    spec, _ = sharding.logical_to_spec(names, shape, mesh, rules)
    return spec


# ----------------------------------------------------------------------------------------------- mesh


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"data": -1}, (8, 1, 1)),
        ({"data": -1, "fsdp": 2}, (4, 2, 1)),
        ({"fsdp": -1, "tensor": 2}, (1, 4, 2)),
        ({"data": 2, "fsdp": 2, "tensor": 2}, (2, 2, 2)),
        ({"data": 1, "fsdp": 8, "tensor": 1}, (1, 8, 1)),
    ],
)
def test_mesh_shape_resolution(config, expected):
    sizes = sharding.resolve_mesh_shape(config, 8)
    assert tuple(sizes[a] for a in sharding.MESH_AXES) == expected
    mesh = sharding.make_mesh(config)
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert tuple(mesh.shape.values()) == expected
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_mesh_from_config_dict_and_default():
    cfg = ml_collections.ConfigDict({"data": -1, "fsdp": 4, "tensor": 1})
    assert dict(sharding.make_mesh(cfg).shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    assert dict(sharding.make_mesh().shape) == {"data": 8, "fsdp": 1, "tensor": 1}
    assert dict(sharding.make_mesh({"tensor": 2}, devices=jax.devices()[:2]).shape)["tensor"] == 2


@pytest.mark.parametrize(
    "config, match",
    [
        ({"data": 3}, r"mesh \{'data': 3, 'fsdp': 1, 'tensor': 1\} has 3 devices .* there are 8"),
        ({"data": 2, "fsdp": 2, "tensor": 4}, r"has 16 devices .* there are 8"),
        ({"data": -1, "fsdp": 3}, r"multiple of 3 devices, but there are 8"),
        ({"data": -1, "fsdp": -1}, r"at most one mesh axis may be -1, got \['data', 'fsdp'\]"),
        ({"data": -1, "model": 2}, r"unknown mesh axes \['model'\]"),
        ({"data": 0}, r"mesh axis 'data' must be a positive int or -1, got 0"),
    ],
)
def test_mesh_errors_name_the_sizes(config, match):
    with pytest.raises(ValueError, match=match):
        sharding.make_mesh(config)


# ---------------------------------------------------------------------------------------------- rules


@pytest.fixture(scope="module")
def mesh222():
    return sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})


@pytest.mark.parametrize(
    "preset, names, shape, expected",
    [
        ("dp", ("embed", "mlp"), (64, 256), P(None, None)),
        ("dp", ("vocab", "embed"), (64, 64), P(None, None)),
        ("fsdp", ("embed", "mlp"), (64, 256), P("fsdp", None)),
        ("fsdp", ("mlp", "embed"), (256, 64), P(None, "fsdp")),
        ("fsdp", ("embed", "heads", "kv"), (64, 4, 16), P("fsdp", None, None)),
        ("fsdp", ("heads", "kv", "embed"), (4, 16, 64), P(None, None, "fsdp")),
        ("fsdp", ("vocab", "embed"), (1000, 64), P(None, "fsdp")),
        ("fsdp", ("layers", "embed", "mlp"), (2, 64, 256), P(None, "fsdp", None)),
        ("fsdp", ("conv_h", "conv_w", "conv_in", "conv_out"), (3, 3, 64, 64), P(None, None, None, "fsdp")),
        ("fsdp", ("norm",), (64,), P(None)),
        ("fsdp", ("embed", "mlp"), (63, 256), P(None, "fsdp")),  # embed indivisible: mlp takes fsdp
        ("fsdp_tp", ("embed", "mlp"), (64, 256), P("fsdp", "tensor")),
        ("fsdp_tp", ("mlp", "embed"), (256, 64), P("tensor", "fsdp")),
        ("fsdp_tp", ("embed", "heads", "kv"), (64, 4, 16), P("fsdp", "tensor", None)),
        ("fsdp_tp", ("heads", "kv", "embed"), (4, 16, 64), P("tensor", None, "fsdp")),
        ("fsdp_tp", ("heads", "kv"), (4, 16), P("tensor", None)),
        ("fsdp_tp", ("vocab", "embed"), (1000, 64), P("tensor", "fsdp")),
        ("fsdp_tp", ("embed",), (64,), P("fsdp")),
        ("fsdp_tp", ("norm",), (64,), P(None)),
    ],
)
def test_param_rules(mesh222, preset, names, shape, expected):
    assert _spec(names, shape, mesh222, preset) == expected


@pytest.mark.parametrize(
    "preset, names, expected",
    [
        ("dp", ("batch", "length", "embed"), P(("data", "fsdp"), None, None)),
        ("fsdp", ("batch", "length", "embed"), P(("data", "fsdp"), None, None)),
        ("fsdp", ("batch", "length", "mlp"), P(("data", "fsdp"), None, None)),
        ("fsdp_tp", ("batch", "length", "embed"), P(("data", "fsdp"), None, None)),
        ("fsdp_tp", ("batch", "length", "mlp"), P(("data", "fsdp"), None, "tensor")),
        ("fsdp_tp", ("batch", "length", "heads", "kv"), P(("data", "fsdp"), None, "tensor", None)),
        ("fsdp_tp", ("batch", "length", "vocab"), P(("data", "fsdp"), None, "tensor")),
    ],
)
def test_activation_rules(mesh222, preset, names, expected):
    shape = (8, 16, 4, 64)[: len(names)] if "heads" in names else (8, 16, 64)
    assert _spec(names, shape, mesh222, preset, "activations") == expected
    # Flax resolves the same table to the same layout.
    assert nn.logical_to_mesh_axes(names, sharding.get_rules(preset).activations) == expected


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"unknown sharding preset 'zero3'; available: \['dp', 'fsdp', 'fsdp_tp'\]"):
        sharding.get_rules("zero3")


def test_rules_restricted_to_a_smaller_mesh():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rules = sharding.get_rules("fsdp_tp").for_mesh(mesh)
    assert dict(rules.activations)["batch"] == "data"
    assert dict(rules.activations)["mlp"] is None
    assert _spec(("batch", "length", "embed"), (8, 4, 64), mesh, "fsdp_tp", "activations") == P("data", None, None)
    assert sharding.batch_sharding(mesh).spec == P("data")


def test_batch_sharding(mesh222):
    s = sharding.batch_sharding(mesh222)
    assert s.spec == P(("data", "fsdp"))
    x = jax.device_put(jnp.zeros((8, 3, 5)), s)
    assert x.sharding.shard_shape(x.shape) == (2, 3, 5)


def test_non_divisible_dims_fall_back_to_replicated_with_one_warning(caplog):
    mesh = sharding.make_mesh({"fsdp": 8})
    sds = jax.ShapeDtypeStruct
    tree = {
        "ok": nn.LogicallyPartitioned(sds((64, 24), jnp.float32), ("embed", "mlp")),
        "odd": nn.LogicallyPartitioned(sds((12, 20), jnp.float32), ("embed", "mlp")),
        "vec": nn.LogicallyPartitioned(sds((10,), jnp.float32), ("embed",)),
        "plain": sds((3,), jnp.float32),
    }
    with caplog.at_level(logging.WARNING, logger="mmjax.sharding"):
        out = sharding.logical_to_shardings(tree, mesh, "fsdp")
    assert out["ok"].spec == P("fsdp", None)
    assert out["odd"].spec == P(None, None)
    assert out["vec"].spec == P(None)
    assert out["plain"].spec == P()
    records = [r for r in caplog.records if r.name == "mmjax.sharding"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert message.startswith("3 parameter dimension(s)")
    assert "['odd'] embed=12 over fsdp=8" in message and "['odd'] mlp=20 over fsdp=8" in message
    assert "['vec'] embed=10 over fsdp=8" in message


class _Odd(nn.Module):
    @nn.compact
    def __call__(self, x):
        return dense(20, ("embed", "mlp"), dtype=jnp.float32, param_dtype=jnp.float32)(x)


def test_init_sharded_with_indivisible_shapes_compiles():
    mesh = sharding.make_mesh({"fsdp": 8})
    params, shardings = sharding.init_sharded(_Odd().init, mesh, "fsdp", jax.random.key(0), jnp.zeros((2, 12)))
    kernel = params["params"]["Dense_0"]["kernel"]
    assert kernel.shape == (12, 20) and kernel.sharding.is_fully_replicated
    assert shardings["params"]["Dense_0"]["kernel"].spec == P(None, None)


# ------------------------------------------------------------------------------------ sharded models


def _encoder(scan=False):
    return Encoder(num_layers=2, num_heads=4, mlp_dim=256, scan=scan)


@pytest.mark.parametrize("scan", [False, True])
def test_fsdp_init_is_directly_sharded(scan):
    mesh = sharding.make_mesh({"fsdp": -1})
    model = _encoder(scan)
    x = jnp.zeros((8, 16, 64))
    init = lambda key, x: model.init(key, x)["params"]
    params, shardings = sharding.init_sharded(init, mesh, "fsdp", jax.random.key(0), x)

    assert jax.tree.structure(params) == jax.tree.structure(shardings)
    is_box = lambda x: isinstance(x, nn.Partitioned)
    assert not any(is_box(x) for x in jax.tree.leaves(params, is_leaf=is_box))
    checked = 0
    for (path, leaf), expected in zip(
        jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(shardings), strict=True
    ):
        name = jax.tree_util.keystr(path)
        assert leaf.sharding.is_equivalent_to(expected, leaf.ndim), name
        if "kernel" in name and leaf.size >= 1024:
            assert leaf.sharding.shard_shape(leaf.shape) != leaf.shape, name
            per_device = {s.device: s.data.nbytes for s in leaf.addressable_shards}
            assert len(per_device) == 8 and all(b * 8 == leaf.nbytes for b in per_device.values()), name
            checked += 1
    # query, key, value, out, fc1, fc2 per layer; scanned layers stack each into one [layers, ...] kernel
    assert checked == (6 if scan else 12)
    # Same values as an ordinary single-device init: sharding changes the layout, not the numbers.
    chex.assert_trees_all_close(jax.device_get(params), nn.meta.unbox(jax.jit(init)(jax.random.key(0), x)))


@pytest.mark.parametrize("activation_rules", [False, True], ids=["gspmd", "activation_rules"])
def test_fsdp_tp_forward_matches_single_device(mesh222, activation_rules):
    model = _encoder()
    x = jax.random.normal(jax.random.key(1), (8, 16, 64))
    init = lambda key, x: model.init(key, x)["params"]
    params, shardings = sharding.init_sharded(init, mesh222, "fsdp_tp", jax.random.key(0), x)
    fc1 = params["layer_0"]["mlp"]["fc1"]["kernel"]
    assert fc1.sharding.spec == P("fsdp", "tensor")
    assert fc1.sharding.shard_shape(fc1.shape) == (32, 128)

    data = sharding.batch_sharding(mesh222)
    forward = jax.jit(lambda p, x: model.apply({"params": p}, x), in_shardings=(shardings, data), out_shardings=data)
    context = sharding.activation_context(mesh222, "fsdp_tp") if activation_rules else contextlib.nullcontext()
    with context:
        out = forward(params, jax.device_put(x, data))
    assert out.sharding.spec == data.spec
    ref = model.apply({"params": jax.device_get(params)}, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=1e-5)


def test_mlp_under_activation_rules_matches_single_device(mesh222):
    model = Mlp(256)
    x = jax.random.normal(jax.random.key(1), (8, 16, 64))
    params, shardings = sharding.init_sharded(model.init, mesh222, "fsdp_tp", jax.random.key(0), x)
    forward = jax.jit(model.apply, in_shardings=(shardings, sharding.batch_sharding(mesh222)))
    with sharding.activation_context(mesh222, "fsdp_tp"):
        hlo = forward.lower(params, x).as_text()
        out = forward(params, x)
    # The hidden activation's constraint ("batch", "length", "mlp") reached the program: split over tensor.
    assert '[{"data", "fsdp"}, {}, {"tensor"}]> : tensor<8x16x256xf32>' in hlo
    assert "sharding_constraint" not in forward.lower(params, x).as_text()  # outside the context: none
    np.testing.assert_allclose(np.asarray(out), np.asarray(model.apply(jax.device_get(params), x)), atol=1e-5)


def test_activation_context_sets_mesh_and_rules(mesh222):
    assert jax.sharding.get_abstract_mesh().empty
    with sharding.activation_context(mesh222, "fsdp_tp"):
        assert dict(nn.get_logical_axis_rules())["batch"] == ("data", "fsdp")
        assert not jax.sharding.get_abstract_mesh().empty

        @jax.jit
        def f(x):
            return nn.with_logical_constraint(x * 2, ("batch", "length", "mlp"))

        y = f(jnp.ones((8, 4, 16)))
    assert y.sharding.spec == P(("data", "fsdp"), None, "tensor")
    assert jax.sharding.get_abstract_mesh().empty
    assert not nn.get_logical_axis_rules()


def test_init_sharded_inside_activation_context(mesh222):
    # Parameters follow the parameter table even where activation rules are active (and flax#3676 stays away).
    model = _encoder()
    init = lambda key, x: model.init(key, x)["params"]
    with sharding.activation_context(mesh222, "fsdp_tp"):
        params, _ = sharding.init_sharded(init, mesh222, "fsdp_tp", jax.random.key(0), jnp.zeros((8, 16, 64)))
    assert params["layer_0"]["attn"]["query"]["kernel"].sharding.spec == P("fsdp", "tensor", None)
    assert params["layer_0"]["mlp"]["fc2"]["kernel"].sharding.spec == P("tensor", "fsdp")


def test_clip_initializes_directly_sharded_under_fsdp():
    """Issue 2's check on the real model: every kernel of 4096+ elements is split over the 8 devices at init."""
    from flax import traverse_util

    from mmjax.encoders import TextTransformer, ViT
    from mmjax.models import CLIP

    mesh = sharding.make_mesh({"data": 1, "fsdp": 8})
    model = CLIP(
        ViT(width=64, depth=2, num_heads=4, patch_size=8, image_size=32, pre_norm=True, final_norm="pooled"),
        TextTransformer(vocab_size=512, width=64, depth=2, num_heads=4, max_length=16),
        embed_dim=64,
    )
    images, ids = jnp.zeros((8, 32, 32, 3)), jnp.zeros((8, 16), jnp.int32)
    params, _ = sharding.init_sharded(
        lambda key, x, t: model.init(key, x, t)["params"], mesh, "fsdp", jax.random.key(0), images, ids
    )
    large = {k: v for k, v in traverse_util.flatten_dict(params, sep="/").items() if v.size >= 4096}
    assert len(large) >= 10  # patch embedding, q/k/v/out and MLP kernels of both towers, token table, projections
    for path, x in large.items():
        per_device = {s.data.size for s in x.addressable_shards}
        assert per_device == {x.size // 8}, f"{path} {x.shape} is not split 8 ways: {x.sharding.spec}"
