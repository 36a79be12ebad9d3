"""Bar chart of a finished `mmjax sweep`: one group of bars per metric, one bar per sweep point.

    python experiments/sweep_chart.py --workdir runs/fusion [--prefix eval/vqa/accuracy]

Reads WORKDIR/results.json (written by `mmjax sweep`) and writes WORKDIR/results.png: the metrics whose names
start with --prefix (overall first, then per question type), plus parameters and step time per point.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _label(row: dict) -> str:
    """A short name for a point: the value of its first swept key (a fusion's `name`, or the raw value)."""
    keys = [k for k in row if k not in ("point",) and "." in k]
    value = row[keys[0]] if keys else row["point"]
    return value.get("name", str(value)) if isinstance(value, dict) else str(value)


def chart(rows: list[dict], prefix: str, path: pathlib.Path) -> None:
    metrics = sorted({k for r in rows for k in r if k.startswith(prefix)}, key=lambda k: (k != prefix, k))
    names = [k[len(prefix) :].lstrip("/") or "overall" for k in metrics]
    fig, (ax, ax_params, ax_time) = plt.subplots(1, 3, figsize=(16, 4), gridspec_kw={"width_ratios": [5, 1, 1]})
    width = 0.8 / len(rows)
    x = np.arange(len(metrics))
    for i, row in enumerate(rows):
        ax.bar(x + i * width, [row.get(k, np.nan) for k in metrics], width, label=_label(row))
    ax.set_xticks(x + width * (len(rows) - 1) / 2, names, rotation=30, fontsize=8)
    ax.set(ylim=(0, 1), ylabel=prefix.split("/")[-1], title=prefix)
    ax.legend(fontsize=8)
    labels = [_label(r) for r in rows]
    ax_params.bar(labels, [r.get("params", np.nan) / 1e6 for r in rows], color="grey")
    ax_params.set(title="parameters (M)")
    ax_time.bar(labels, [r.get("step_time_ms", np.nan) for r in rows], color="grey")
    ax_time.set(title="step time (ms)")
    for a in (ax_params, ax_time):
        a.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--prefix", default="eval/vqa/accuracy")
    args = parser.parse_args()
    workdir = pathlib.Path(args.workdir)
    rows = json.loads((workdir / "results.json").read_text())
    chart(rows, args.prefix, workdir / "results.png")
    print(f"wrote {workdir / 'results.png'}")


if __name__ == "__main__":
    main()
