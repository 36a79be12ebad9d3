"""Experiment configs: load a `get_config(arg)` file, apply `--config.a.b=v` overrides, validate, expand sweeps.

A config file is a Python file with `get_config(arg: str | None) -> ml_collections.ConfigDict`; `file.py:tiny`
passes "tiny" as `arg`. It may also define `get_sweep(arg) -> list[dict]` (see `expand_sweep`).
Everything that can be checked before compiling is checked here, and each error names the key.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import itertools
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from mmjax import sharding

REQUIRED_KEYS = (
    "task",
    "model",
    "data",
    "optim",
    "mesh",
    "batch_size",
    "total_steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "seed",
)


class ConfigError(ValueError):
    """A config problem found before anything compiles; the message names the key."""


def _load_module(path: str):
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"mmjax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config(arg)")
    return module


def split_spec(spec: str) -> tuple[str, str | None]:
    """'configs/clip_shapes.py:tiny' -> ('configs/clip_shapes.py', 'tiny')."""
    path, sep, arg = spec.partition(":")
    return path, (arg if sep else None)


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load `path.py[:arg]`, apply overrides ("a.b=v" or "--config.a.b=v"), and return the unlocked config."""
    path, arg = split_spec(spec)
    config = _load_module(path).get_config(arg)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict, got {type(config).__name__}")
    config = ml_collections.ConfigDict(config.to_dict())  # a fresh, unlocked copy
    config.config_spec = spec
    return apply_overrides(config, overrides)


def load_sweep(spec: str) -> list[dict[str, Any]]:
    """The points of the sweep a config file declares with `get_sweep(arg)`; [{}] when it declares none."""
    path, arg = split_spec(spec)
    module = _load_module(path)
    if not hasattr(module, "get_sweep"):
        return [{}]
    return expand_sweep(module.get_sweep(arg))


def expand_sweep(blocks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Sweep declarations -> a list of {key: value} override dicts.

    Each block is {"product": {key: [values]}} (every combination) or {"zip": {key: [values]}} (the i-th values
    together; lists of equal length). The sweep is the product of its blocks, in order:
        [{"product": {"model.fusion": ["early", "late"]}}, {"zip": {"optim.lr": [1e-3, 3e-4], "seed": [0, 1]}}]
    gives 2 x 2 = 4 points.
    """
    points: list[dict[str, Any]] = [{}]
    for block in blocks:
        if set(block) not in ({"product"}, {"zip"}):
            raise ConfigError(f"a sweep block must be {{'product': ...}} or {{'zip': ...}}, got keys {sorted(block)}")
        kind, lists = next(iter(block.items()))
        keys = list(lists)
        if kind == "product":
            combos = [dict(zip(keys, vals)) for vals in itertools.product(*(lists[k] for k in keys))]
        else:
            lengths = {k: len(lists[k]) for k in keys}
            if len(set(lengths.values())) > 1:
                raise ConfigError(f"zip sweep lists must have equal lengths, got {lengths}")
            combos = [dict(zip(keys, vals)) for vals in zip(*(lists[k] for k in keys))]
        points = [{**p, **c} for p in points for c in combos]
    return points


def point_name(point: Mapping[str, Any]) -> str:
    """A directory-safe name for a sweep point: {'model.fusion': 'late', 'seed': 1} -> 'fusion=late,seed=1'."""
    if not point:
        return "default"
    parts = [f"{k.rsplit('.', 1)[-1]}={v['name'] if isinstance(v, Mapping) else v}" for k, v in point.items()]
    return ",".join(parts).replace("/", "_").replace(" ", "")


def all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        keys.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            keys.extend(all_keys(v, prefix + k + "."))
    return keys


def _unknown_key(config, key: str) -> ConfigError:
    close = difflib.get_close_matches(key, all_keys(config), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def _parse_value(text: str, current: Any, key: str) -> Any:
    """Parse an override string into the type of the value it replaces."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"config key {key!r} expects a bool, got {text!r}")
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text  # an unset optional key takes the string as is
        raise ConfigError(f"config key {key!r} expects {type(current).__name__}, got {text!r}") from None
    if current is None:
        return value
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(current)(value)
    if type(value) is not type(current):
        raise ConfigError(f"config key {key!r} expects {type(current).__name__}, got {text!r}")
    return value


def set_key(config: ml_collections.ConfigDict, key: str, value: Any, *, parse: bool = False) -> None:
    """Set a dotted key that must already exist (so typos fail), parsing strings to the existing type."""
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
        if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
            raise _unknown_key(config, key)
        node = node[part]
    if leaf not in node:
        raise _unknown_key(config, key)
    current = node[leaf]
    if isinstance(current, ml_collections.ConfigDict):
        if parse and isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        if not isinstance(value, Mapping):  # a whole group is replaced only by a mapping (sweeps do this)
            raise ConfigError(f"config key {key!r} is a group; set one of its keys instead")
        value = ml_collections.ConfigDict(dict(value))
    if parse and isinstance(value, str):
        value = _parse_value(value, current, key)
    with node.ignore_type():
        node[leaf] = value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str] | Mapping[str, Any]):
    """Apply ["--config.a.b=v", "a.c=w"] (strings, parsed to the existing type) or {"a.b": v} (values as is)."""
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            set_key(config, key, value)
        return config
    for item in overrides:
        text = item[len("--config.") :] if item.startswith("--config.") else item
        key, sep, value = text.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like --config.key=value")
        set_key(config, key.strip(), value, parse=True)
    return config


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Every check that needs no compilation: required keys, types, mesh vs devices, batch vs mesh, widths."""
    for key in REQUIRED_KEYS:
        _expect(key in config, f"config is missing the required key {key!r}")
    for key in ("batch_size", "total_steps", "log_every", "eval_every", "checkpoint_every", "seed"):
        value = config[key]
        _expect(
            isinstance(value, int) and not isinstance(value, bool),
            f"config key {key!r} must be an int, got {value!r}",
        )
    _expect(config.batch_size > 0, f"config key 'batch_size' must be positive, got {config.batch_size}")
    _expect(config.total_steps >= 0, f"config key 'total_steps' must be >= 0, got {config.total_steps}")
    for key in ("log_every", "checkpoint_every"):
        _expect(config[key] > 0, f"config key {key!r} must be positive, got {config[key]}")
    _expect(
        config.eval_every >= 0, f"config key 'eval_every' must be >= 0 (0: never evaluate), got {config.eval_every}"
    )
    sizes = mesh_sizes(config.mesh, num_devices)
    data_ways = sizes["data"] * sizes["fsdp"]
    micro = config.optim.get("grad_accum_steps", 1)
    _expect(
        config.batch_size % (data_ways * micro) == 0,
        f"config key 'batch_size' ({config.batch_size}) must divide over the data axes data x fsdp = "
        f"{sizes['data']} x {sizes['fsdp']}" + (f" times optim.grad_accum_steps={micro}" if micro > 1 else ""),
    )
    _validate_widths(config.model, "model")


def mesh_sizes(mesh_config: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """config.mesh + device count -> {'data': d, 'fsdp': f, 'tensor': t}; -1 takes the remaining devices."""
    try:
        return sharding.resolve_mesh_shape(dict(mesh_config.items()), num_devices)
    except ValueError as e:
        raise ConfigError(f"config key 'mesh': {e}") from None


def _validate_widths(node: ml_collections.ConfigDict, path: str) -> None:
    """Every sub-config holding `width` and `num_heads` must have width divisible by heads."""
    if "width" in node and "num_heads" in node and node.width and node.num_heads:
        _expect(
            node.width % node.num_heads == 0,
            f"config key '{path}.width' ({node.width}) must be divisible by '{path}.num_heads' ({node.num_heads})",
        )
    for key, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            _validate_widths(value, f"{path}.{key}")
