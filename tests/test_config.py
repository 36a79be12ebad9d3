"""Config files, overrides and validation: every mistake that needs no compilation fails in one line naming the key."""

import pathlib

import pytest

from mmjax import config as mmconfig

TINY = str(pathlib.Path(__file__).resolve().parents[1] / "configs/clip_shapes.py") + ":tiny"


def _error(fn, *args) -> str:
    with pytest.raises(mmconfig.ConfigError) as e:
        fn(*args)
    message = str(e.value)
    assert "\n" not in message, message
    return message


def test_tiny_variant_has_every_required_key_and_validates_on_eight_devices():
    config = mmconfig.load_config(TINY)
    assert set(mmconfig.REQUIRED_KEYS) <= set(config)
    assert config.batch_size == 16 and config.total_steps == 5
    mmconfig.validate(config, 8)


def test_overrides_parse_to_the_existing_type():
    config = mmconfig.load_config(
        TINY, ["--config.optim.lr=1", "batch_size=32", "optim.rules=[('image_tower/.*', {'freeze': True})]"]
    )
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.batch_size == 32
    assert config.optim.rules == [("image_tower/.*", {"freeze": True})]
    assert mmconfig.load_config(TINY, ["progress=false"]).progress is False


def test_unknown_key_names_the_closest_valid_key():
    message = _error(mmconfig.load_config, TINY, ["--config.optim.lrr=1"])
    assert message == "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"
    assert "'model.text.width'" in _error(mmconfig.load_config, TINY, ["model.text.widht=8"])
    assert "is a group" in _error(mmconfig.load_config, TINY, ["optim=1"])


@pytest.mark.parametrize(
    "override, key",
    [("batch_size=abc", "batch_size"), ("batch_size=1.5", "batch_size"), ("progress=maybe", "progress")],
)
def test_bad_type_names_the_key(override, key):
    assert f"config key {key!r} expects" in _error(mmconfig.load_config, TINY, [override])


@pytest.mark.parametrize(
    "overrides, devices, fragment",
    [
        (["mesh.data=3"], 8, "config key 'mesh': mesh {'data': 3, 'fsdp': 1, 'tensor': 1} has 3 devices"),
        (["mesh.data=-1", "mesh.fsdp=3"], 8, "config key 'mesh'"),
        (["batch_size=12"], 8, "config key 'batch_size' (12) must divide over the data axes data x fsdp = 8 x 1"),
        (["mesh.data=2", "mesh.fsdp=4", "batch_size=4"], 8, "config key 'batch_size' (4)"),
        (["optim.grad_accum_steps=4"], 8, "times optim.grad_accum_steps=4"),
        (["model.text.num_heads=3"], 8, "'model.text.width' (32) must be divisible by 'model.text.num_heads' (3)"),
        (["total_steps=-1"], 8, "config key 'total_steps'"),
        (["checkpoint_every=0"], 8, "config key 'checkpoint_every' must be positive, got 0"),
        (["eval_every=-1"], 8, "config key 'eval_every' must be >= 0 (0: never evaluate), got -1"),
    ],
)
def test_validate_fails_before_compiling_naming_the_key(overrides, devices, fragment):
    config = mmconfig.load_config(TINY, overrides)
    assert fragment in _error(mmconfig.validate, config, devices)


def test_validate_needs_the_required_keys_and_int_types():
    config = mmconfig.load_config(TINY)
    del config["seed"]
    assert _error(mmconfig.validate, config, 1) == "config is missing the required key 'seed'"
    config = mmconfig.apply_overrides(mmconfig.load_config(TINY), {"log_every": "10"})
    assert "config key 'log_every' must be an int" in _error(mmconfig.validate, config, 1)


def test_sweeps_expand_products_and_zips_into_named_points():
    points = mmconfig.expand_sweep(
        [{"product": {"model.loss": ["softmax", "sigmoid"]}}, {"zip": {"optim.lr": [1e-3, 3e-4], "seed": [0, 1]}}]
    )
    assert len(points) == 4
    assert points[1] == {"model.loss": "softmax", "optim.lr": 3e-4, "seed": 1}
    assert mmconfig.point_name(points[1]) == "loss=softmax,lr=0.0003,seed=1"
    assert "equal lengths" in _error(mmconfig.expand_sweep, [{"zip": {"a": [1], "b": [1, 2]}}])


def test_missing_file_and_variant():
    assert "does not exist" in _error(mmconfig.load_config, "configs/nope.py")
    with pytest.raises(ValueError, match=r"unknown config argument 'huge'; expected one of \[.*'tiny'\]"):
        mmconfig.load_config(TINY.replace(":tiny", ":huge"))
