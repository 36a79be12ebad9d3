"""Action recognition on `moving_shapes`: every video tower, on clips in order, shuffled, and as one frame.

    python experiments/video_encoders.py --out runs/video_encoders                 # 6 towers x 3 orders
    python experiments/video_encoders.py --out runs/video_encoders --steps 1000    # a shorter schedule
    python experiments/video_encoders.py --out /tmp/video_encoders --tiny          # the check: tiny, 2 x 2 runs
    python experiments/video_encoders.py --out runs/video_encoders --steps 1000 --report  # tables of what is done

Trains `configs/video_shapes.py` (8 motions; top-1 and per-motion accuracy on the 1,000 test clips) for each tower
(frame_vit with a temporal transformer, frame_vit averaging its frames, video_vit joint / factorised / divided,
video_resnet) and each `data.frame_order` (keep; shuffle: each clip's frames in a random order of its own; single:
the central frame repeated), in training and testing alike, into OUT/<tower>-<order>/, one run after another in
this process (`mmjax.train.loop.train`, what `mmjax train` runs). A run whose workdir already holds its final
evaluation is skipped and an interrupted one resumes from its checkpoint: rerun the same command to go on.

Then, from each workdir's eval.json, metrics.jsonl and dataset_info.json: test top-1, accuracy per motion,
parameters and the median step time, written to OUT/results.json, OUT/results.md (tables) and OUT/results.png (a
chart, when matplotlib is installed). What to look for: under `shuffle` a model that uses time loses the motions
that are each other's reversal (left/right, up/down, grows/shrinks) but keeps `bounces` and `stays`; under
`single` every motion but `stays` falls to about chance (1/8 overall, 1/2 within a reversed pair, at best).

Wall time at full size: each run is the config's 2,000 steps of 64 clips (the frame_vit took ~0.75 s a step on a
2-core CPU beside another run, ~25 min a run), so the 18 runs are an accelerator's job, or use --steps and --towers.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's mmjax, even without `pip install -e .`

CONFIG = REPO / "configs" / "video_shapes.py"
# tower name in the table -> the config file's argument that selects it
TOWERS = {
    "frame_vit": "tower=frame_vit",
    "frame_vit_mean": "tower=frame_vit,temporal=mean",
    "video_vit": "tower=video_vit",
    "video_vit_factorised": "tower=video_vit_factorised",
    "video_vit_divided": "tower=video_vit_divided",
    "video_resnet": "tower=video_resnet",
}
ORDERS = ("keep", "shuffle", "single")
TINY_TOWERS, TINY_ORDERS = ("frame_vit", "video_vit"), ("keep", "shuffle")
METRIC = "classification/accuracy"


def load(tower: str, order: str, args):
    """The resolved config of one run."""
    from mmjax import config as mmconfig

    spec = f"{CONFIG}:{TOWERS[tower]}" + (",tiny" if args.tiny else "")
    overrides = [f"data.frame_order={order}", "progress=False"]
    overrides += [f"total_steps={args.steps}"] if args.steps else []
    overrides += [f"data.data_dir={args.data_dir}"] if args.data_dir else []
    return mmconfig.load_config(spec, overrides)


def finished(workdir: pathlib.Path, total_steps: int) -> bool:
    """Whether the run's final evaluation is in its eval.json."""
    from mmjax.eval import read_eval_json

    return METRIC in read_eval_json(workdir).get("history", {}).get(str(total_steps), {})


def num_params(config, workdir: pathlib.Path) -> int:
    """The model's parameter count, from its shapes alone (nothing is allocated or restored)."""
    import jax
    import numpy as np

    from mmjax.predict.loading import dataset_info
    from mmjax.train.tasks import build_task

    task = build_task(config, dataset_info(config, workdir))
    shapes = jax.eval_shape(task.init, jax.random.key(0), task.init_batch())
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def collect(tower: str, order: str, config, workdir: pathlib.Path) -> dict:
    """One row of the results: the final test numbers, the model's size and its step time."""
    from mmjax.eval import read_eval_json
    from mmjax.predict.loading import dataset_info

    final = read_eval_json(workdir)["history"][str(config.total_steps)]
    classes = dataset_info(config, workdir).classes
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    step_times = [json.loads(line)["step_time_ms"] for line in lines if line.strip()]
    return {
        "tower": tower,
        "frame_order": order,
        "workdir": str(workdir),
        "steps": config.total_steps,
        "top1": final[METRIC],
        "per_class": {c: final.get(f"{METRIC}/{c}") for c in classes},
        "params": num_params(config, workdir),
        "step_time_ms": statistics.median(step_times) if step_times else None,
    }


def markdown(rows: list[dict], towers: list[str], orders: list[str]) -> str:
    """Top-1 per tower and frame order (with parameters and step time), then accuracy per motion for each run."""
    by = {(r["tower"], r["frame_order"]): r for r in rows}
    out = ["| tower | params | step (ms) | " + " | ".join(f"top-1 {o}" for o in orders) + " |"]
    out.append("|---|---|---|" + "---|" * len(orders))
    for t in towers:
        first = next(by[(t, o)] for o in orders if (t, o) in by)
        cells = [f"{by[(t, o)]['top1']:.3f}" if (t, o) in by else "" for o in orders]
        time_ms = f"{first['step_time_ms']:.0f}" if first["step_time_ms"] is not None else ""
        out.append(f"| {t} | {first['params']:,} | {time_ms} | " + " | ".join(cells) + " |")
    classes = list(rows[0]["per_class"])
    out += ["", "| tower | frame order | " + " | ".join(classes) + " |", "|---|---|" + "---|" * len(classes)]
    for r in rows:
        cells = [f"{v:.2f}" if v is not None else "" for v in r["per_class"].values()]
        out.append(f"| {r['tower']} | {r['frame_order']} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def chart(rows: list[dict], towers: list[str], orders: list[str], path: pathlib.Path) -> bool:
    """Top-1 per tower and order, then accuracy per motion under each order; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib, then rerun: the runs are skipped)")
        return False

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt
    import numpy as np

    by = {(r["tower"], r["frame_order"]): r for r in rows}
    classes = list(rows[0]["per_class"])
    chance = 1 / len(classes)
    fig, axes = plt.subplots(1, 1 + len(orders), figsize=(5 + 5 * len(orders), 4), squeeze=False)
    ax = axes[0, 0]
    width = 0.8 / len(orders)
    for i, o in enumerate(orders):
        values = [by[(t, o)]["top1"] if (t, o) in by else np.nan for t in towers]
        ax.bar(np.arange(len(towers)) + i * width, values, width, label=o)
    ax.set_xticks(np.arange(len(towers)) + width * (len(orders) - 1) / 2, towers, rotation=30, fontsize=8)
    ax.set(ylim=(0, 1), ylabel="test top-1", title="top-1 by frame order")
    ax.legend(fontsize=8)
    width = 0.8 / len(towers)
    for ax, o in zip(axes[0, 1:], orders):
        for i, t in enumerate(towers):
            per_class = by[(t, o)]["per_class"] if (t, o) in by else {}
            values = [np.nan if per_class.get(c) is None else per_class[c] for c in classes]
            ax.bar(np.arange(len(classes)) + i * width, values, width, label=t)
        ax.set_xticks(np.arange(len(classes)) + width * (len(towers) - 1) / 2, classes, rotation=30, fontsize=8)
        ax.set(ylim=(0, 1), title=f"accuracy per motion, frames: {o}")
        ax.legend(fontsize=7)
    for ax in axes[0]:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1)  # chance over the 8 motions
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _logging() -> None:
    """What `mmjax train` shows: mmjax's messages (each run's header, evaluations, warnings), libraries' errors."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda r: r.levelno >= logging.ERROR or r.name.startswith("mmjax"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()  # TFDS's bars for data generated locally: mmjax's own line says it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder of the runs' workdirs and the results")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: the config's)")
    parser.add_argument("--tiny", action="store_true", help=f"the config's tiny variant, {TINY_TOWERS} x {TINY_ORDERS}")
    parser.add_argument("--towers", nargs="+", choices=list(TOWERS), help="default: all (--tiny: two)")
    parser.add_argument("--orders", nargs="+", choices=ORDERS, help="default: all (--tiny: keep, shuffle)")
    parser.add_argument("--data_dir", default=None, help="data.data_dir (default: the schema's)")
    parser.add_argument("--report", action="store_true", help="train nothing: the tables of the finished runs")
    args = parser.parse_args()
    towers = args.towers or list(TINY_TOWERS if args.tiny else TOWERS)
    orders = args.orders or list(TINY_ORDERS if args.tiny else ORDERS)
    out = pathlib.Path(args.out)
    _logging()
    # every run's config first: a bad argument fails here, before any training
    configs = {(t, o): load(t, o, args) for t in towers for o in orders}

    from mmjax.train.loop import train

    rows = []
    for (tower, order), config in configs.items():
        workdir = out / f"{tower}-{order}"
        if finished(workdir, config.total_steps):
            print(f"{tower} / {order}: done before, skipped ({workdir})")
        elif args.report:
            continue
        else:
            start = time.perf_counter()
            result = train(config, str(workdir))
            if result.pop("preempted"):
                sys.exit(f"stopped by SIGTERM during {workdir}; rerun the same command to resume")
            print(f"{tower} / {order}: trained {config.total_steps} steps in {time.perf_counter() - start:.1f} s")
        rows.append(collect(tower, order, config, workdir))
        print(f"{tower} / {order}: test top-1 {rows[-1]['top1']:.3f}")

    if not rows:
        sys.exit(f"no finished run of {config.total_steps} steps in {out}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown(rows, towers, orders)
    (out / "results.md").write_text(table)
    print(table)
    drawn = chart(rows, towers, orders, out / "results.png")
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}" + (f", {out / 'results.png'}" if drawn else ""))


if __name__ == "__main__":
    from mmjax.cli import run_script

    run_script(main)
