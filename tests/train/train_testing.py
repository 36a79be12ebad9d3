"""Helpers shared by the trainer tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = f"{REPO}/configs/clip_shapes.py:tiny"
BASELINE_STEPS = 5
BASELINE_PROFILE = (2, 3)


def tiny_overrides(data_dir: str, *overrides: str) -> list[str]:
    return [f"data.data_dir={data_dir}", "progress=False", *overrides]


def mmjax_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmjax", *args]


def run_mmjax(env, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(mmjax_command(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def read_metrics(workdir) -> list[dict]:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
