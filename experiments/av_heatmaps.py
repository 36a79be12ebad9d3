"""After `mmjax train` of `configs/av_shapes.py:task=localization`: where the model hears the sound, over frames.

    python experiments/av_heatmaps.py --config configs/av_shapes.py:task=localization --workdir runs/avl [--num 6]

For the first N clips of the localization evaluator's split, with the latest checkpoint: every other frame with the
heatmap (the cosine of the clip's soundtrack to each patch, `SoundLocalizer`) over it, the sounding shape's box
(solid) and the silent one's (dashed), and the heatmap's maximum (the point the pointing game scores). The model
never saw a box in training. Writes WORKDIR/heatmaps.png (or --out) and prints the run's localization numbers.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only
import jax  # noqa: E402
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mmjax import config as mmconfig  # noqa: E402
from mmjax.train.evaluate import predict_split  # noqa: E402
from mmjax.train.loop import Setup  # noqa: E402


def heatmaps(config, workdir: pathlib.Path, num: int) -> dict[str, np.ndarray]:
    """{"frames": [N, T, S, S, 3] in [0, 1], "maps": [N, T, gh, gw], "boxes": [N, T, 2, 4]} of the first N clips."""
    setup = Setup(config)
    evaluator = setup.evaluator("localization")
    split = evaluator.cfg.split if "[" in evaluator.cfg.split else f"{evaluator.cfg.split}[:{num}]"
    _, params = setup.restore_params(workdir)
    with setup.activations():
        task = setup.task
        predict = jax.jit(
            lambda p, b: {"maps": task.heatmaps(p, b), "frames": b["image"], "boxes": b["sounding_boxes"]}
        )
        out = predict_split(predict, params, evaluator.batches(setup.mesh, split))
    mean, std = np.asarray(config.data.mean), np.asarray(config.data.std)
    out = {k: np.asarray(v)[:num] for k, v in out.items()}
    out["frames"] = np.clip(out["frames"] * std + mean, 0, 1)
    return out


def plot(out: dict[str, np.ndarray], path: pathlib.Path, every: int = 2) -> None:
    n, t, side = out["frames"].shape[:3]
    shown = range(0, t, every)
    fig, axes = plt.subplots(n, len(shown), figsize=(1.6 * len(shown), 1.6 * n), squeeze=False)
    for i in range(n):
        for j, f in enumerate(shown):
            ax = axes[i, j]
            ax.imshow(out["frames"][i, f], extent=(0, 1, 1, 0))
            heat = out["maps"][i, f]
            ax.imshow(heat, extent=(0, 1, 1, 0), cmap="inferno", alpha=0.55, vmin=-1, vmax=1)
            gh, gw = heat.shape
            y, x = np.unravel_index(np.argmax(heat), heat.shape)
            ax.plot((x + 0.5) / gw, (y + 0.5) / gh, "c+", markersize=9, markeredgewidth=2)
            for k, style in ((0, "-"), (1, "--")):
                x0, y0, x1, y1 = out["boxes"][i, f, k]
                ax.add_patch(
                    mpatches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime" if k == 0 else "white",
                                       ls=style, lw=1.2)
                )  # fmt: skip
            ax.set(xlim=(0, 1), ylim=(1, 0), xticks=[], yticks=[])
            if i == 0:
                ax.set_title(f"frame {f}", fontsize=8)
    fig.suptitle("heatmap of the soundtrack over each frame; green: the sounding shape, dashed: the silent one, "
                 "+: the maximum", fontsize=8)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num", type=int, default=6)
    parser.add_argument("--out", default=None, help="the picture's path (default WORKDIR/heatmaps.png)")
    args, overrides = parser.parse_known_args()
    config = mmconfig.load_config(args.config, overrides)
    workdir = pathlib.Path(args.workdir)
    out = heatmaps(config, workdir, args.num)
    path = pathlib.Path(args.out) if args.out else workdir / "heatmaps.png"
    plot(out, path)
    evals = json.loads((workdir / "eval.json").read_text())
    print({k: v for k, v in evals.items() if k.startswith("localization/")})
    print(f"wrote {path}")


if __name__ == "__main__":
    from mmjax.cli import run_script

    run_script(main)
