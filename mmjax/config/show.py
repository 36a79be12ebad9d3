"""`mmjax config show`: the fully resolved config, each key with its value and, with docs, its one-line doc."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mmjax.config.resolve import MISSING
from mmjax.config.schema import EVAL_KEYS, Entries, Named, declaration, evaluator_class, named_keys


def _docs(decl: Mapping, config: Mapping, path: str, out: dict[str, str]) -> None:
    for key, d in decl.items():
        here = f"{path}.{key}" if path else key
        value = config.get(key, MISSING)
        if isinstance(d, dict):
            _docs(d, value, here, out)
        elif isinstance(d, Named):
            out[here] = d.doc
            if value:
                _docs(named_keys(d, value["name"], here, dict(value)), value, here, out)
        elif isinstance(d, Entries):
            out[here] = d.doc
            for name, entry in (value or {}).items():
                keys = {**EVAL_KEYS, **evaluator_class(entry["type"], f"{here}.{name}.type").KEYS}
                _docs(keys, entry, f"{here}.{name}", out)
        else:
            out[here] = d[1]


def docs(config: Mapping) -> dict[str, str]:
    """{dotted key: one-line doc} for every key of a resolved config."""
    config = config.to_dict() if hasattr(config, "to_dict") else config
    out: dict[str, str] = {}
    _docs(declaration({"task": config["task"]}), config, "", out)
    return out


def _value(v: Any) -> str:
    try:
        return json.dumps(v)
    except TypeError:
        return repr(v)


def render(config: Mapping, with_docs: bool = False) -> str:
    """One `key = value` line per leaf key (`  # doc` appended with docs), in schema order."""
    config = config.to_dict() if hasattr(config, "to_dict") else config
    doc = docs(config) if with_docs else {}
    lines = []

    def walk(node: Mapping, path: str) -> None:
        for key, value in node.items():
            here = f"{path}.{key}" if path else key
            if isinstance(value, Mapping) and not _is_value(here, doc):
                walk(value, here)
            else:
                line = f"{here} = {_value(value)}"
                lines.append(f"{line:<60}  # {doc[here]}" if here in doc else line)

    walk(config, "")
    return "\n".join(lines)


def _is_value(key: str, doc: dict[str, str]) -> bool:
    """A dict-valued key that is a value (data.fields), not a group: documented, with no documented children."""
    return key in doc and not any(k.startswith(key + ".") for k in doc)
