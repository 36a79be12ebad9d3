"""`mmjax sweep`: train every point of the sweep a config file declares, each in workdir/<point>/, then tabulate.

Points run one after another in this process (a cluster scheduler can instead launch `mmjax train` per point
with the same overrides; `--dry_run` prints them). A point whose run already finished is resumed, i.e. skipped.
"""

from __future__ import annotations

import json
import logging
import shlex
from typing import Any

from etils import epath

from mmjax import config as mmconfig

logger = logging.getLogger(__name__)


def sweep_points(spec: str, overrides: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """[(directory name, {key: value})] for each point; also validates every point's overrides up front."""
    points = mmconfig.load_sweep(spec)
    named = []
    for point in points:
        mmconfig.load_config(spec, overrides, point)  # fails here, before any training, on a bad sweep key
        named.append((mmconfig.point_name(point), point))
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise mmconfig.ConfigError(f"sweep points have clashing names: {names}")
    return named


def run_sweep(
    spec: str, workdir: str, overrides: list[str], *, dry_run: bool = False, devices=None
) -> list[dict[str, Any]]:
    """Train every point of `spec`'s get_sweep() into workdir/<point>, in turn, on `devices` (default: all)."""
    points = sweep_points(spec, overrides)
    if dry_run:
        for name, point in points:
            args = [f"--config.{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in point.items()]
            command = ["mmjax", "train", "--config", spec, "--workdir", f"{workdir}/{name}", *overrides, *args]
            print(f"{name}\t{shlex.join(command)}")
        return []
    from mmjax.train.loop import train

    rows = []
    for name, point in points:
        config = mmconfig.load_config(spec, overrides, point)
        logger.info("sweep point %s: %s", name, point)
        # epath, not pathlib: pathlib.Path("gs://b/x") is the local relative path "gs:/b/x"
        result = train(config, str(epath.Path(workdir) / name), devices=devices)
        if result.pop("preempted"):  # the point saved on SIGTERM: stop here, a rerun resumes it and goes on
            logger.warning("sweep stopped by SIGTERM during point %s; rerun the same command to resume", name)
            return rows
        rows.append({"point": name, **point, **result})
    write_table(workdir, rows)
    return rows


def write_table(workdir: str | epath.Path, rows: list[dict[str, Any]]) -> str:
    """results.json plus a Markdown table (results.md) of the eval metrics and timing of every point."""
    workdir = epath.Path(workdir)  # local or gs://
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    keys = (
        ["point"] + sorted({k for r in rows for k in r if k.startswith("eval/")}) + ["params", "loss", "step_time_ms"]
    )
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    table = "\n".join(lines) + "\n"
    (workdir / "results.md").write_text(table)
    print(table)
    return table
