"""After `mmjax train` of a captioning config: sample captions beside their test images.

    python experiments/caption_report.py --config configs/caption_shapes.py --workdir runs/caption [--num 8]

Greedy-decodes the first N images of the eval split with the latest checkpoint and writes WORKDIR/samples.png
(each image with its generated caption and its first reference) and WORKDIR/samples.md (the same as text).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")  # files only
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from demo_report import _wrap  # noqa: E402

from mmjax import config as mmconfig  # noqa: E402
from mmjax.train.checkpoint import Checkpointer  # noqa: E402
from mmjax.train.evaluate import predict_split  # noqa: E402
from mmjax.train.loop import Setup  # noqa: E402


def samples(config, workdir: pathlib.Path, num: int) -> list[tuple[np.ndarray, str, list[str]]]:
    """[(image in [0, 1], generated caption, reference captions)] for the first `num` eval images."""
    setup = Setup(config)
    evaluator = next(e for e in setup.evaluators.values() if e.cfg.type == "captioning")
    split = evaluator.cfg.split if "[" in evaluator.cfg.split else f"{evaluator.cfg.split}[:{num}]"  # the first few
    ckpt = Checkpointer(workdir / "checkpoints", async_save=False)
    with setup.activations():
        params = ckpt.restore(ckpt.latest_step(), setup.abstract_state).params
        predict = jax.jit(lambda p, batch: {**evaluator.predict(p, batch), "pixels": batch["image"]})
        out = predict_split(predict, params, evaluator.batches(setup.mesh, split))
    ckpt.close()
    text = setup.task.text
    out = [
        (pixels, text(tokens), [text(ids) for ids, real in zip(refs, mask) if real])
        for pixels, tokens, refs, mask in zip(out["pixels"], out["tokens"], out["references"], out["caption_mask"])
    ][:num]
    mean, std = np.asarray(config.data.mean), np.asarray(config.data.std)
    return [(np.clip(p * std + mean, 0, 1), pred, refs) for p, pred, refs in out]


def plot(rows, path: pathlib.Path) -> None:
    cols = 2
    n = len(rows)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(10, 2.6 * ((n + cols - 1) // cols)))
    for ax, (pixels, pred, refs) in zip(np.ravel(axes), rows):
        ax.imshow(pixels)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"generated: {_wrap(pred, 55)}\nreference: {_wrap(refs[0], 55)}", fontsize=6.5, loc="left")
    for ax in np.ravel(axes)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # TFDS's per-builder "custom data configuration" warnings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num", type=int, default=8)
    args, overrides = parser.parse_known_args()
    config = mmconfig.load_config(args.config, overrides)
    workdir = pathlib.Path(args.workdir)
    rows = samples(config, workdir, args.num)
    plot(rows, workdir / "samples.png")
    lines = ["| # | generated | first reference |", "|---|---|---|"]
    lines += [f"| {i} | {pred} | {refs[0]} |" for i, (_, pred, refs) in enumerate(rows)]
    (workdir / "samples.md").write_text("\n".join(lines) + "\n")
    evals = json.loads((workdir / "eval.json").read_text())
    print({k: v for k, v in evals.items() if k.startswith("captioning/")})
    print("\n".join(lines))
    print(f"\nwrote {workdir / 'samples.png'} and {workdir / 'samples.md'}")


if __name__ == "__main__":
    main()
