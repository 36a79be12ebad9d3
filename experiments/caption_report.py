"""After `mmjax train` of a captioning config: sample captions beside their test images (or clips, or audio).

    python experiments/caption_report.py --config configs/caption_shapes.py --workdir runs/caption [--num 8]

Greedy-decodes the first N examples of the eval split with the latest checkpoint and writes WORKDIR/samples.md
(each generated caption beside its first reference) and, for images and clips, WORKDIR/samples.png (each image,
or a clip as a strip of its frames, with the two captions). For audio (a transcription config) the text is the
report: the reference is what was said.
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
from mmjax.train.evaluate import predict_split  # noqa: E402
from mmjax.train.loop import Setup  # noqa: E402


def _pixels(batch) -> dict:
    return {"pixels": batch["image"]} if "image" in batch else {}  # audio batches have none


def samples(config, workdir: pathlib.Path, num: int) -> list[tuple[np.ndarray | None, str, list[str]]]:
    """[(image in [0, 1] (a clip: its frames side by side; audio: None), generated caption, reference captions)]
    for the first `num` eval examples."""
    setup = Setup(config)
    evaluator = setup.evaluator("captioning")
    split = evaluator.cfg.split if "[" in evaluator.cfg.split else f"{evaluator.cfg.split}[:{num}]"  # the first few
    _, params = setup.restore_params(workdir)
    with setup.activations():
        predict = jax.jit(lambda p, batch: {**evaluator.predict(p, batch), **_pixels(batch)})
        out = predict_split(predict, params, evaluator.batches(setup.mesh, split))
    text = setup.task.text
    pixels = out.get("pixels", [None] * len(out["tokens"]))
    out = [
        (image, text(tokens), [text(ids) for ids, real in zip(refs, mask) if real])
        for image, tokens, refs, mask in zip(pixels, out["tokens"], out["references"], out["caption_mask"])
    ][:num]
    mean, std = np.asarray(config.data.mean), np.asarray(config.data.std)
    return [(None if p is None else _strip(np.clip(p * std + mean, 0, 1)), pred, refs) for p, pred, refs in out]


def _strip(image: np.ndarray) -> np.ndarray:
    """An image as is; a clip [T, S, S, 3] as its frames side by side."""
    return np.concatenate(list(image), axis=1) if image.ndim == 4 else image


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
    if rows and rows[0][0] is not None:
        plot(rows, workdir / "samples.png")
    lines = ["| # | generated | first reference |", "|---|---|---|"]
    lines += [f"| {i} | {pred} | {refs[0]} |" for i, (_, pred, refs) in enumerate(rows)]
    (workdir / "samples.md").write_text("\n".join(lines) + "\n")
    evals = json.loads((workdir / "eval.json").read_text())
    print({k: v for k, v in evals.items() if k.startswith("captioning/")})
    print("\n".join(lines))
    print(f"\nwrote {workdir / 'samples.md'}" + (" and samples.png" if rows and rows[0][0] is not None else ""))


if __name__ == "__main__":
    from mmjax.cli import run_script

    run_script(main)
