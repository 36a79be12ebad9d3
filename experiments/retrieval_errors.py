"""What a video-text retrieval model on `moving_shapes` confuses: for each text -> video miss, which attributes of
the clip it ranked first differ from the true clip's.

    python experiments/retrieval_errors.py --config configs/video_shapes.py:task=retrieval --workdir runs/vr2 \
        --config.model.image.num_frames=4 [--step 500] [--config.k=v ...]

Embeds the retrieval evaluator's split with the checkpoint (the latest, or --step), ranks every clip for each of
the 3 captions of every clip, and for each miss compares the two clips' actors (colour, shape, size, motion, and
the 3 x 3 place it starts at), whether a second shape appears, and the second shapes (colour, shape, motion,
place). Prints text -> video R@1 and two tables: how often each attribute differs among the misses, and how many
attributes a miss gets wrong. A miss that differs in nothing is a tie between clips whose captions are identical.
"""

from __future__ import annotations

import argparse
import collections
import pathlib

import jax
import numpy as np

from mmjax import config as mmconfig
from mmjax.data import moving_shapes
from mmjax.train.evaluate import predict_split
from mmjax.train.loop import Setup


def attributes(clip: moving_shapes.Clip) -> dict[str, str]:
    """The attributes a caption names: the actor's five, whether a second shape appears, and if so its four."""
    actor, *rest = clip.movers
    out = {f"actor {k}": getattr(actor, k) for k in ("colour", "shape", "size", "motion")}
    out["actor place"] = moving_shapes.start_place(actor, clip)
    out["a second shape"] = "yes" if rest else "no"
    if not rest:
        return out
    other = rest[0]
    out |= {f"second {k}": getattr(other, k) for k in ("colour", "shape", "motion")}
    return out | {"second place": moving_shapes.start_place(other, clip)}


def embed(config, workdir: pathlib.Path, step: int | None) -> tuple[int, dict, Setup]:
    setup = Setup(config)
    evaluator = setup.evaluator("retrieval")

    @jax.jit
    def predict(params, batch):
        return {**evaluator.predict(params, batch), "ids": batch["input_ids"]}  # ids: to find each clip

    step, params = setup.restore_params(workdir, step)
    with setup.activations():
        out = predict_split(predict, params, evaluator.batches(setup.mesh))
    return step, out, setup


def clips_in_order(out: dict, setup: Setup, source) -> list[moving_shapes.Clip]:
    """The clip behind each evaluated example, found by its captions (the pipeline's order is not the index's)."""
    split = next(e.cfg.split for e in setup.evaluators.values() if e.cfg.type == "retrieval")
    n = len(out["image"])
    by_captions = {}
    for i in range(n):
        clip = moving_shapes.generate(source.seed, split, i, source.image_size, source.num_frames)["clip"]
        by_captions[tuple(moving_shapes.captions(clip))] = clip

    real = out["caption_mask"].astype(bool)

    def decoded(i):  # the word tokenizer spaces the comma
        ids = out["ids"][i][real[i]]
        return tuple(setup.task.tokenizer.decode(row).replace(" ,", ",") for row in ids)

    return [by_captions[decoded(i)] for i in range(n)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--step", type=int, default=None, help="the checkpoint (default: the latest)")
    args, overrides = parser.parse_known_args()
    config = mmconfig.load_config(args.config, overrides)
    if config.data.source != "moving_shapes":
        parser.error(f"--config {args.config}: data.source is {config.data.source!r}, expected 'moving_shapes'")
    step, out, setup = embed(config, pathlib.Path(args.workdir), args.step)
    clips = clips_in_order(out, setup, config.data.moving_shapes)
    truth = [attributes(c) for c in clips]
    videos, texts = out["image"], out["text"]  # [N, D], [N, caption slots, D]
    real = out["caption_mask"].astype(bool)  # slots past a clip's own captions are padding
    differs, how_many, queries, hits = collections.Counter(), collections.Counter(), 0, 0
    for j in range(texts.shape[1]):
        first = np.argmax(texts[:, j] @ videos.T, axis=1)
        for i, top in enumerate(first):
            if not real[i, j]:
                continue
            queries += 1
            if top == i:
                hits += 1
                continue
            wrong = [k for k in truth[i].keys() | truth[top].keys() if truth[i].get(k) != truth[top].get(k)]
            how_many[len(wrong)] += 1
            differs.update(wrong)
    misses = queries - hits
    print(f"step {step}: text -> video R@1 {hits / queries:.3f} ({misses:,} misses of {queries:,} captions)\n")
    print("| attribute | share of misses where it differs |\n|---|---|")
    for key, count in differs.most_common():
        print(f"| {key} | {count / misses:.2f} |")
    print("\n| attributes wrong | misses |\n|---|---|")
    for count in sorted(how_many):
        print(f"| {count} | {how_many[count]} |")


if __name__ == "__main__":
    from mmjax.cli import run_script

    run_script(main)
