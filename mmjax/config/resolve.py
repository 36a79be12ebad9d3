"""Stated keys (a config file's differences plus overrides) merged onto the schema: every key present, typed,
checked against its choices; a key the schema does not know fails with the closest known one."""

from __future__ import annotations

import ast
import copy
import difflib
from collections.abc import Mapping
from typing import Any

from mmjax.config.errors import ConfigError
from mmjax.config.schema import EVAL_KEYS, Entries, Named, declaration, evaluator_class, named_keys, task_class

MISSING = object()


class Text(str):
    """An override's text, parsed into the type of the key it sets once the schema says what that is."""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def all_keys(tree: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        out.append(prefix + k)
        if isinstance(v, Mapping):
            out.extend(all_keys(v, prefix + k + "."))
    return out


def unknown_key(key: str, known: list[str], where: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{where}{hint}")


def kind_of(decl: tuple) -> type | None:
    """The type a key's values must have: declared as the 4th element, else its default's (None: any)."""
    if len(decl) > 3 and decl[3] is not None:
        return decl[3]
    return None if decl[0] is None else type(decl[0])


def parse_text(text: str, kind: type | None, key: str) -> Any:
    """An override string -> a value of type `kind` (None: whatever Python literal it spells, else the string)."""
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        if lowered == "none":
            return None
        raise ConfigError(f"config key {key!r} expects a bool, got {text!r}")
    if kind is str:
        return None if text == "None" else str(text)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if kind is None:
            return str(text)  # an untyped key takes the string as is
        raise ConfigError(f"config key {key!r} expects {kind.__name__}, got {text!r}") from None


def check_value(value: Any, decl: tuple, key: str) -> Any:
    """`value` for a key declared `decl` = (default, doc[, choices[, type]]): type-checked (ints widen to floats,
    lists and tuples interchange; None is allowed where the default is None) and within its choices."""
    kind = kind_of(decl)
    if isinstance(value, Text):
        value = parse_text(value, kind, key)
    if value is None and decl[0] is not None:
        raise ConfigError(f"config key {key!r} expects {kind.__name__}, got None")
    if kind is not None and value is not None:
        if kind is bool or isinstance(value, bool):
            ok = kind is bool and isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float))
            value = float(value) if ok else value
        elif kind in (list, tuple):
            ok = isinstance(value, (list, tuple))
            value = kind(value) if ok else value
        elif kind is dict:
            ok = isinstance(value, Mapping)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise ConfigError(f"config key {key!r} expects {kind.__name__}, got {value!r}")
    if len(decl) > 2 and decl[2] is not None and value not in decl[2]:
        raise ConfigError(f"config key {key!r} is {value!r}; expected one of {list(decl[2])}")
    return value


def merge(raw: Any, decl: dict, path: str = "") -> dict:
    """The group declared `decl` with the stated `raw` values over its defaults."""
    if raw is MISSING or raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key {path!r} is a group; got {raw!r}")
    out = {}
    for key, d in decl.items():
        here = _join(path, key)
        value = raw.get(key, MISSING)
        if isinstance(d, dict):
            out[key] = merge(value, d, here)
        elif isinstance(d, Named):
            out[key] = merge_named(value, d, here)
        elif isinstance(d, Entries):
            out[key] = value  # filled by merge_evals, which needs the task
        else:
            out[key] = copy.deepcopy(d[0]) if value is MISSING else check_value(value, d, here)
    unknown = [k for k in raw if k not in decl]
    if unknown:
        raise unknown_key(_join(path, unknown[0]), all_keys(_declared(decl), path + "." if path else ""))
    return out


def _declared(decl: dict) -> dict:
    return {k: _declared(v) if isinstance(v, dict) else 0 for k, v in decl.items()}


def merge_named(raw: Any, named: Named, path: str) -> dict | None:
    if raw is MISSING:
        raw = {}
    if isinstance(raw, str):  # a group named by its name alone: model.fusion = "early"
        raw = {"name": raw}
    if raw is None or (not raw and named.default is None):
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key {path!r} is a group ({named.table}); got {raw!r}")
    name = raw.get("name", named.default)
    if isinstance(name, Text):
        name = str(name)
    if isinstance(raw.get("variant"), Text):  # the variant decides the size defaults: parse it first
        raw = {**raw, "variant": parse_text(raw["variant"], None, f"{path}.variant")}
    if name is None:
        raise ConfigError(f"config key '{path}.name' is required: which {named.table}")
    keys = named_keys(named, name, path, raw)
    try:
        return merge({**raw, "name": name}, keys, path)
    except ConfigError as e:
        if str(e).startswith("unknown config key"):
            raise ConfigError(f"{e} ({named.table} {name!r} has no such field)") from None
        raise


def merge_evals(raw: Any, defaults: Mapping[str, Mapping], path: str = "evals") -> dict:
    """`evals`: the stated entries, or the task's defaults when none are stated."""
    entries = defaults if raw is MISSING or raw is None else raw
    if not isinstance(entries, Mapping):
        raise ConfigError(f"config key {path!r} must map evaluator names to groups, got {entries!r}")
    out = {}
    for name, entry in entries.items():
        here = _join(path, name)
        if not isinstance(entry, Mapping):
            raise ConfigError(f"config key {here!r} must be a group {{type, split, ...}}, got {entry!r}")
        kind = entry.get("type") or name
        cls = evaluator_class(str(kind), f"{here}.type")
        out[name] = merge({**entry, "type": str(kind)}, {**EVAL_KEYS, **cls.KEYS}, here)
    return out


def resolve(raw: Mapping) -> dict:
    """Stated keys -> every key of the schema, as a nested dict (no derived sizes yet: see derive.py)."""
    out = merge(raw, declaration(raw))
    out["evals"] = merge_evals(raw.get("evals", MISSING), task_class(out["task"]).DEFAULT_EVALS)
    return out
