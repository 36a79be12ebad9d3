"""The fused label of `sounding_shapes` through every fusion, beside each modality alone: a table and a chart.

    python experiments/av_fusions.py --root runs/av_curriculum --step 500 1000 --bench --data-dir /work/data

Reads ROOT/<row>/eval.json (written by `mmjax train`; the README's commands train the seven rows) at each `--step`:
test accuracy overall at each, and per class (small, large) at the last. With --bench, times each row's train step
with `mmjax bench` one after another in this process's machine (side by side, nothing else running), which also
gives the parameter count. Writes ROOT/results.json, ROOT/results.md and ROOT/results.png (experiments/
sweep_chart.py's chart, of the last step).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

CONFIG = REPO / "configs" / "av_shapes.py"
# row -> the config file's argument that builds it: the fusions of both towers, then each tower alone
ROWS = {
    "early": "fusion=early",
    "mid": "fusion=mid",
    "bottleneck": "fusion=bottleneck",
    "late": "fusion=late",  # the pooled vectors multiplied (configs/av_shapes.py: combine=product)
    "late (concat)": "fusion=late,combine=concat",  # added: the additive control, which cannot bind
    "video alone": "modality=video",
    "audio alone": "modality=audio",
}
# what every row shares (the README's commands): the curriculum, patch tokens from the localizer's frame tower
SHARED = [
    "data.sounding_shapes.single_fraction=0.5",
    "model.image.tokens=patches",
    "model.image.temporal_depth=0",
    "optim.lr=2e-4",
    "total_steps=1000",
]
METRIC = "classification/accuracy"


def bench(row: str, data_dir: str | None, steps: int) -> dict:
    """`mmjax bench` of the row's train step: its JSON (step_time_ms, params, model_flops_per_step, ...)."""
    overrides = [f"--config.{o}" for o in SHARED + ([f"data.data_dir={data_dir}"] if data_dir else [])]
    cmd = [sys.executable, "-m", "mmjax", "bench", "--config", f"{CONFIG}:{ROWS[row]}", "--steps", str(steps)]
    out = subprocess.run(cmd + overrides, check=True, capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


def evaluation(workdir: pathlib.Path, step: int) -> dict:
    """The run's evaluation at `step` (its eval.json history), or {} when it has none there."""
    path = workdir / "eval.json"
    if not path.exists():
        return {}
    evals = json.loads(path.read_text())
    history = evals.get("history") or {str(evals["step"]): evals}
    return history.get(str(step), {})


def table(rows: list[dict], steps: list[int]) -> str:
    """Test accuracy at each of `steps`, then per class at the last, parameters and step time."""
    at = [f"test accuracy at step {s:,}" for s in steps]
    lines = [
        f"| run | {' | '.join(at)} | small (step {steps[-1]:,}) | large | parameters | step time (ms) |",
        "|---|" + "---|" * (len(steps) + 4),
    ]
    for r in rows:
        acc = [r["by_step"].get(str(s)) for s in steps] + [r.get(f"eval/{METRIC}{k}") for k in ("/small", "/large")]
        cells = [f"{a:.3f}" if a is not None else "-" for a in acc]
        params = f"{r['params']:,}" if "params" in r else "-"
        time = f"{r['step_time_ms']:.0f}" if "step_time_ms" in r else "-"
        lines.append(f"| {r['point']} | {' | '.join(cells)} | {params} | {time} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the folder holding one workdir per row, named as ROWS")
    parser.add_argument("--step", type=int, nargs="+", default=[1000], help="the evaluation steps to report")
    parser.add_argument("--bench", action="store_true", help="time each row's step (mmjax bench)")
    parser.add_argument("--bench-steps", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    root = pathlib.Path(args.root)
    if not root.is_dir():
        parser.error(f"--root {root}: no such folder (it holds one workdir per row: {', '.join(ROWS)})")
    rows = []
    for name in ROWS:
        # the chart and the per-class columns show the last step; the table has every step's overall accuracy
        last = evaluation(root / name, args.step[-1])
        by_step = {str(s): evaluation(root / name, s).get(METRIC) for s in args.step}
        row = {"point": name, "by_step": by_step, **{f"eval/{k}": v for k, v in last.items()}}
        if args.bench:
            timed = bench(name, args.data_dir, args.bench_steps)
            row.update(params=timed["params"], step_time_ms=timed["step_time_ms"])
        rows.append(row)
    (root / "results.json").write_text(json.dumps(rows, indent=1))
    (root / "results.md").write_text(table(rows, args.step) + "\n")
    print(table(rows, args.step))
    from sweep_chart import chart

    chart(rows, f"eval/{METRIC}", root / "results.png")
    print(f"wrote {root / 'results.md'} and {root / 'results.png'}")


if __name__ == "__main__":
    main()
