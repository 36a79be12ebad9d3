"""Config files, command-line overrides and sweeps -> one resolved `ConfigDict`.

A config file is a Python file with `get_config(arg: str | None)` returning the keys that differ from the schema
(a ConfigDict or dict); `file.py:tiny` passes "tiny" as `arg`. It may also define `get_sweep(arg) -> list[dict]`
(see `expand_sweep`). Overrides `--config.a.b=v` may set any key of the resolved config: a tower's fields, an
evaluator's keys, a new evaluator (`--config.evals.zs.type=zeroshot`), a whole group as a dict literal.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import itertools
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from mmjax.config.derive import derive
from mmjax.config.errors import ConfigError
from mmjax.config.resolve import Text, all_keys, resolve, unknown_key
from mmjax.config.schema import EVAL_KEYS, Entries, Named, declaration, named_keys, tables, task_class


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


def stated_keys(spec: str) -> dict:
    """What the file `spec` states: its get_config(arg) as a plain nested dict."""
    path, arg = split_spec(spec)
    try:
        stated = _load_module(path).get_config(arg)
    except ValueError as e:  # a config file's own argument checks (parse_arg) raise ValueError
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{spec}: {e}") from None
    if isinstance(stated, ml_collections.ConfigDict):
        stated = stated.to_dict()
    if not isinstance(stated, Mapping):
        raise ConfigError(f"{path}: get_config must return a ConfigDict or dict, got {type(stated).__name__}")
    return {**copy.deepcopy(dict(stated)), "config_spec": spec}


def load_config(
    spec: str, overrides: Sequence[str] = (), values: Mapping[str, Any] | None = None
) -> ml_collections.ConfigDict:
    """Load `path.py[:arg]`, apply `overrides` ("a.b=v" or "--config.a.b=v", parsed to each key's type) and
    `values` ({"a.b": v}, as is: sweep points), resolve onto the schema and derive the dependent sizes."""
    return make_config(stated_keys(spec), overrides, values)


def make_config(
    stated: Mapping, overrides: Sequence[str] = (), values: Mapping[str, Any] | None = None
) -> ml_collections.ConfigDict:
    """The resolved config for `stated` keys (as a config file would return them) plus overrides."""
    raw = copy.deepcopy(dict(stated))
    for key, value in [*parse_overrides(overrides), *(values or {}).items()]:
        set_stated(raw, key, value)
    return ml_collections.ConfigDict(derive(resolve(raw), raw))


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Text]]:
    out = []
    for item in overrides:
        text = item[len("--config.") :] if item.startswith("--config.") else item
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like --config.key=value")
        out.append((key.strip(), Text(value)))
    return out


ANY = object()  # a place whose keys are not known yet (a new evaluator without a type): checked when resolved


def declared_at(raw: Mapping, key: str) -> Any:
    """What the schema declares at dotted `key` for a config whose stated keys are `raw`: a key's tuple, a group,
    a Named or an Entries (ANY where it cannot tell yet). Unknown keys fail naming the closest declared one."""
    parts = key.split(".")
    decl: Any = declaration(raw)
    node: Any = raw
    for i, part in enumerate(parts):
        here = ".".join(parts[:i])
        if isinstance(decl, Named):
            group = node if isinstance(node, Mapping) else {"name": node} if isinstance(node, str) else {}
            name = group.get("name", decl.default)
            if name is None:
                return ANY
            decl = named_keys(decl, str(name), here, dict(group))
        elif isinstance(decl, Entries):
            defaults = task_class(raw.get("task", "")).DEFAULT_EVALS if "evals" not in raw else {}
            entry = (node or {}).get(part) if isinstance(node, Mapping) else None
            entry = entry if entry is not None else defaults.get(part, {})
            kind = entry.get("type") if isinstance(entry, Mapping) else None
            kind = kind or part
            if kind not in tables()["evaluator"]:
                return ANY
            decl, node = {**EVAL_KEYS, **tables()["evaluator"][kind].KEYS}, entry
            continue
        if not isinstance(decl, dict):
            raise ConfigError(f"config key {here!r} is a value, not a group; cannot set {key!r}")
        if part not in decl:
            raise unknown_key(key, _known_keys(raw))
        decl = decl[part]
        node = node.get(part) if isinstance(node, Mapping) else None
    return decl


def _known_keys(raw: Mapping) -> list[str]:
    try:
        return all_keys(resolve(raw))
    except ConfigError:
        return []


def set_stated(raw: dict, key: str, value: Any) -> None:
    """State `key` = `value` in `raw`. The key must be declared (so typos fail), except below an evaluator entry
    whose type is not known yet; a Text value is parsed to the key's type when the config is resolved. A group
    takes a dict literal, and a Named group also its name alone (`--config.model.fusion=late`), or None when it is
    optional."""
    decl = declared_at(raw, key)
    if isinstance(value, Text) and decl is ANY:
        try:
            literal = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            literal = value
        value = dict(literal) if isinstance(literal, Mapping) else value
    elif isinstance(value, Text) and isinstance(decl, (dict, Named, Entries)):
        try:
            literal = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            literal = value
        if isinstance(literal, Mapping):
            value = dict(literal)
        elif isinstance(decl, Named) and isinstance(literal, str):
            value = {"name": literal}
        elif isinstance(decl, Named) and literal is None and decl.default is None:
            value = None  # an optional component (e.g. model.audio) turned off
        else:
            raise ConfigError(f"config key {key!r} is a group; set one of its keys instead, or give a dict")
    parts = key.split(".")
    if parts[0] == "evals" and "evals" not in raw:  # overriding the task's default evaluators: state them
        raw["evals"] = copy.deepcopy(task_class(raw.get("task", "")).DEFAULT_EVALS)
    target = raw
    for part in parts[:-1]:
        current = target.get(part)
        if isinstance(current, str):  # a Named group stated by its name
            current = {"name": current}
        target[part] = dict(current) if isinstance(current, Mapping) else {}
        target = target[part]
    target[parts[-1]] = value


def load_sweep(spec: str) -> list[dict[str, Any]]:
    """The points of the sweep a config file declares with `get_sweep(arg)`; [{}] when it declares none."""
    path, arg = split_spec(spec)
    module = _load_module(path)
    if not hasattr(module, "get_sweep"):
        return [{}]
    return expand_sweep(module.get_sweep(arg)) or [{}]


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


def list_configs(directory: str = "configs") -> str:
    """Every config file in `directory`: its first docstring line and the variants it declares (`VARIANTS`,
    {argument: what it selects}), for `mmjax configs`."""
    folder = pathlib.Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"{directory!r} is not a folder of config files")
    blocks = []
    for file in sorted(folder.glob("*.py")):
        try:
            module = _load_module(str(file))
        except ConfigError:  # a helper module (common.py): no get_config
            continue
        doc = (module.__doc__ or "").strip().splitlines()
        variants = getattr(module, "VARIANTS", {})
        lines = [f"{file}  {doc[0] if doc else ''}".rstrip()]
        width = max((len(name) for name in variants), default=0) + 2
        lines += [f"    :{name:<{width}}{what}" for name, what in variants.items()]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
