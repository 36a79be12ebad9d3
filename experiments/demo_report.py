"""After `mmjax train` of a CLIP config: print the results table and draw the demo's plots into the workdir.

    python experiments/demo_report.py --config configs/clip_shapes.py --workdir runs/demo [--config.k=v ...]

Writes WORKDIR/curves.png (training loss, learning rate, retrieval recall over steps) and WORKDIR/retrieval.png
(text queries from the test split, each with its top-5 retrieved test images; the true image is outlined).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only: the demo runs on machines with no display
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mmjax import config as mmconfig  # noqa: E402
from mmjax.train.checkpoint import check_saved  # noqa: E402
from mmjax.train.evaluate import predict_split  # noqa: E402
from mmjax.train.loop import Setup  # noqa: E402


def results_table(evals: dict) -> str:
    keys = sorted(k for k in evals if k not in ("step", "history"))
    lines = ["| metric | value |", "|---|---|"] + [f"| {k} | {evals[k]:.4f} |" for k in keys]
    return "\n".join(lines)


def plot_curves(workdir: pathlib.Path) -> pathlib.Path:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = json.loads((workdir / "eval.json").read_text()).get("history", {})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in records]
    axes[0].plot(steps, [r["loss"] for r in records])
    axes[0].set(title="training loss", xlabel="step", yscale="log")
    axes[1].plot(steps, [r["learning_rate"] for r in records])
    axes[1].set(title="learning rate", xlabel="step")
    eval_steps = sorted(int(s) for s in evals)
    for key, label in (
        ("retrieval/text_to_image/recall@1", "text -> image R@1"),
        ("retrieval/image_to_text/recall@1", "image -> text R@1"),
    ):
        values = [evals[str(s)].get(key, np.nan) for s in eval_steps]
        axes[2].plot(eval_steps, values, marker="o", label=label)
        for step, value in zip(eval_steps, values):  # the numbers, not only dots: often one or two evaluations
            axes[2].annotate(f"{value:.3f}", (step, value), textcoords="offset points", xytext=(6, 4), fontsize=8)
    # the whole run on the x axis, so a single evaluation at the end reads as "at the end"
    axes[2].set(title="retrieval on the eval split", xlabel="step", ylabel="recall@1", ylim=(0, 1))
    axes[2].set_xlim(0, max([*steps, *eval_steps, 1]) * 1.05)
    axes[2].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = workdir / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_retrieval(setup: Setup, workdir: pathlib.Path, num_queries: int = 6, top_k: int = 5) -> pathlib.Path:
    """Embed every test image and the first caption of a few; show each caption's top-k images."""
    config, evaluator = setup.config, setup.evaluator("retrieval")

    @jax.jit
    def predict(params, batch):  # the evaluator's embeddings, plus what the picture shows
        return {**evaluator.predict(params, batch), "pixels": batch["image"], "ids": batch["input_ids"]}

    _, params = setup.restore_params(workdir)
    with setup.activations():
        out = predict_split(predict, params, evaluator.batches(setup.mesh))
    images, pixels = out["image"], out["pixels"]
    captions = [setup.task.tokenizer.decode(out["ids"][i, 0]) for i in range(num_queries)]
    query_embeds, query_images = out["text"][:num_queries, 0], list(range(num_queries))
    mean, std = np.asarray(config.data.mean), np.asarray(config.data.std)
    pixels = np.clip(pixels * std + mean, 0, 1)
    scores = np.stack(query_embeds) @ images.T
    fig, axes = plt.subplots(num_queries, top_k, figsize=(2 * top_k, 2.9 * num_queries))
    for q in range(num_queries):
        for rank, index in enumerate(np.argsort(-scores[q])[:top_k]):
            ax = axes[q, rank]
            ax.imshow(pixels[index])
            ax.set_xticks([])
            ax.set_yticks([])
            if index == query_images[q]:  # the image the query caption was written for
                for side in ax.spines.values():
                    side.set(color="lime", linewidth=4)
        axes[q, 0].set_title(_wrap(f"query {q + 1}: {captions[q]}", width=100, lines=4), fontsize=7, loc="left")
    fig.suptitle(
        f"Text -> image retrieval: each row is one caption and its top {top_k} of {len(images)} images, best first; "
        "a green frame marks the image the caption was written for",
        fontsize=9,
    )
    fig.tight_layout()
    path = workdir / "retrieval.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _wrap(text: str, width: int = 60, lines: int = 3) -> str:
    """Wrap at word boundaries; past `lines` lines the rest is marked as cut, never silently dropped mid-phrase."""
    words, out, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            out.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    out.append(line)
    return "\n".join(out if len(out) <= lines else [*out[: lines - 1], out[lines - 1] + " [...]"])


def main():
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # TFDS's per-builder "custom data configuration" warnings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    args, overrides = parser.parse_known_args()
    config = mmconfig.load_config(args.config, overrides)
    workdir = pathlib.Path(args.workdir)
    check_saved(workdir)  # a workdir never trained: one line
    if not (workdir / "eval.json").exists():
        parser.error(f"{workdir / 'eval.json'}: not there; evaluate the run first: mmjax eval --workdir {workdir}")
    evals = json.loads((workdir / "eval.json").read_text())
    setup = Setup(config)
    print(f"\nResults on the {setup.evaluator('retrieval').cfg.split} split (step {evals['step']}):\n")
    print(results_table(evals))
    print(f"\nplots: {plot_curves(workdir)}  {plot_retrieval(setup, workdir)}")


if __name__ == "__main__":
    from mmjax.cli import run_script

    run_script(main)
