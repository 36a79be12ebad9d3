"""`workdir/eval.json`: the latest value of every eval metric at the top level, and the full history per step.

Layout:

    {
      "retrieval/text_to_image/recall@1": 0.62,      # latest value of each metric ever written ...
      "vqa/accuracy": 0.91,                          # ... (the one from the highest step that has it)
      "step": 5000,                                  # highest step written so far
      "history": {                                   # every write, merged per step (keys are str(step))
        "1000": {"retrieval/text_to_image/recall@1": 0.31, ...},
        "5000": {"retrieval/text_to_image/recall@1": 0.62, "vqa/accuracy": 0.91}
      }
    }

Writes merge: two evals written at the same step end up in one history entry, and a later write of a key at the
same step replaces the earlier value. Each write goes to a temporary file in the same folder, then `os.replace`, so
a reader (or a crash) never sees half a file. NaN and infinities are stored as null (valid JSON). Call it from one
process only (e.g. when jax.process_index() == 0).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from etils import epath

EVAL_JSON = "eval.json"
RESERVED_KEYS = ("step", "history")


def _plain(value: Any) -> Any:
    """numpy / jax scalars -> float or int; non-finite floats -> None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def read_eval_json(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed eval.json at `path` (a file, or a workdir holding eval.json); {} if there is none yet."""
    path = _resolve(path)
    return json.loads(path.read_text()) if path.exists() else {}


def _resolve(path: str | os.PathLike) -> epath.Path:
    """eval.json itself, given it or its workdir; local or remote (gs://...)."""
    path = epath.Path(path)
    return path / EVAL_JSON if path.is_dir() or not path.name.endswith(".json") else path


def _is_local(path: epath.Path) -> bool:
    return "://" not in str(path)


def write_eval_json(path: str | os.PathLike, metrics: Mapping[str, Any], step: int) -> dict[str, Any]:
    """Merge `metrics` (name -> scalar) at `step` into eval.json atomically; returns the new file content.

    Args:
      path: the eval.json file, or the workdir (then workdir/eval.json); parent folders are created.
      metrics: flat dict of scalars (floats, ints, numpy or jax scalars), e.g. from `retrieval_metrics`.
      step: the training step these numbers belong to.
    """
    clash = [k for k in metrics if k in RESERVED_KEYS]
    if clash:
        raise ValueError(f"metric names {clash} are reserved for the eval.json layout")
    path = _resolve(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    history = {str(s): dict(v) for s, v in read_eval_json(path).get("history", {}).items()}
    history.setdefault(str(int(step)), {}).update({k: _plain(v) for k, v in metrics.items()})
    history = dict(sorted(history.items(), key=lambda item: int(item[0])))
    latest: dict[str, Any] = {}
    for entry in history.values():  # ascending steps: the highest step that has a key wins
        latest.update(entry)
    content = {**latest, "step": max(int(s) for s in history), "history": history}

    text = json.dumps(content, indent=2, sort_keys=False) + "\n"
    if not _is_local(path):  # an object store writes an object whole or not at all: no temporary file needed
        path.write_text(text)
        return content
    fd, tmp = tempfile.mkstemp(prefix=".eval.", suffix=".json.tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return content
