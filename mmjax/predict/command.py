"""`mmjax predict`: a trained model on your images, from the command line.

mmjax predict --workdir D | --hf DIR  zeroshot --images a.png b.png|DIR --classes "red circle" "blue square"
mmjax predict --workdir D  rank --images DIR --text "a red circle"            # images ranked for a text
mmjax predict --workdir D  rank --image a.png --texts "a red circle" "a blue square"   # texts for an image
mmjax predict --workdir D  answer --image x.png --question "what color is the circle?"   # VQA runs
mmjax predict --workdir D  caption --images DIR                                          # captioning runs

Every action prints a table (one line per image, or per ranked candidate) and takes `--jsonl OUT` (one JSON
object per input) and `--show OUT.png` (the images with their predictions as titles). A mistake (a missing file,
not an image, a workdir without a checkpoint, a run that cannot make that prediction) is one line on stderr and
exit code 2.

This module imports nothing heavy at load time: `mmjax.cli` builds its parser on every command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import textwrap
from collections.abc import Sequence

MAX_PANELS = 48  # images drawn by --show; a bigger folder is drawn in part (the table and JSONL hold all)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `predict` subcommand's arguments (`mmjax.cli` adds the subparser and calls this)."""
    parser.description = "A trained model on your images: zero-shot classes, rankings, answers, captions."
    parser.epilog = "examples:\n" + "\n".join(
        "  " + line for line in __doc__.splitlines() if line.startswith("mmjax predict")
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _model_arguments(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _model_arguments(common, argparse.SUPPRESS)  # also accepted after the action, without clobbering
    common.add_argument("--jsonl", metavar="OUT", help="also write one JSON object per input to OUT")
    common.add_argument("--show", metavar="OUT.png", help="also draw the images with their predictions into OUT.png")
    common.add_argument("--batch_size", type=int, default=32, help="images per forward pass (default 32)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    z = actions.add_parser("zeroshot", parents=[common], help="classify images among class names (CLIP runs)")
    z.add_argument("--images", nargs="+", required=True, help="image files and/or folders of images")
    z.add_argument("--classes", nargs="+", required=True, help="class names, e.g. 'red circle' 'blue square'")
    z.add_argument("--templates", nargs="+", help="prompt templates with one '{}' (default: CLIP's 8 photo prompts)")
    z.add_argument("--top", type=int, default=3, help="classes shown per image (default 3)")
    r = actions.add_parser("rank", parents=[common], help="rank images for a text, or texts for an image")
    r.add_argument("--images", nargs="+", help="with --text: the images to rank (files and/or folders)")
    r.add_argument("--text", help="with --images: the query")
    r.add_argument("--image", help="with --texts: the query image")
    r.add_argument("--texts", nargs="+", help="with --image: the texts to rank")
    r.add_argument("--top", type=int, default=None, help="candidates shown (default: all)")
    a = actions.add_parser("answer", parents=[common], help="answer a question about images (VQA runs)")
    a.add_argument("--image", "--images", dest="images", nargs="+", required=True, help="image files or folders")
    a.add_argument("--question", required=True)
    a.add_argument("--top", type=int, default=3, help="answers shown per image (default 3)")
    c = actions.add_parser("caption", parents=[common], help="caption images (captioning runs)")
    c.add_argument("--images", "--image", dest="images", nargs="+", required=True, help="image files or folders")


def _model_arguments(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--workdir", default=default, help="a training workdir (its newest intact checkpoint)")
    parser.add_argument("--hf", default=default, metavar="DIR", help="a Hugging Face CLIP directory")
    parser.add_argument("--step", type=int, default=default, help="--workdir: this checkpoint step")


def run(args: argparse.Namespace) -> int:
    """Run `mmjax predict`; returns the exit code (2, after one line on stderr, for any mistake)."""
    from mmjax.config import ConfigError
    from mmjax.predict.images import PredictError

    try:
        result = _predict(args)
    except (PredictError, ConfigError) as e:
        print(f"mmjax: error: {_one_line(e)}", file=sys.stderr)
        return 2
    print(result.table)
    try:
        if args.jsonl:
            with open(args.jsonl, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(record) + "\n" for record in result.records)
        if args.show:
            draw(result.panels, args.show, result.title)
    except OSError as e:
        print(f"mmjax: error: {_one_line(e)}", file=sys.stderr)
        return 2
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


@dataclasses.dataclass
class Result:
    """What an action produced: the printed table, the JSONL records, the --show panels (image, title)."""

    table: str
    records: list[dict]
    panels: list
    title: str | None = None


def _predict(args) -> Result:
    from mmjax.predict.images import PredictError, image_files
    from mmjax.predict.predictor import Predictor

    if bool(args.workdir) == bool(args.hf):
        raise PredictError("give one of --workdir D (a training run) or --hf DIR (a Hugging Face CLIP directory)")
    if args.hf and args.step is not None:
        raise PredictError("--step goes with --workdir, not --hf")
    if args.action == "rank":
        _check_rank_arguments(args)
    files = image_files([args.image] if args.action == "rank" and args.image else args.images)  # before loading
    predictor = Predictor.from_workdir(args.workdir, args.step) if args.workdir else Predictor.from_pretrained(args.hf)
    names, images = predictor.load_images(files)
    return ACTIONS[args.action](predictor, args, names, images)


def _check_rank_arguments(args) -> None:
    from mmjax.predict.images import PredictError

    images_for_text = args.images and args.text and not (args.image or args.texts)
    texts_for_image = args.image and args.texts and not (args.images or args.text)
    if not (images_for_text or texts_for_image):
        raise PredictError("rank takes --images ... --text T (images for a text) or --image I --texts ... (texts)")


def _zeroshot(predictor, args, names, images) -> Result:
    classes = list(args.classes)
    probs = predictor.zero_shot(images, classes, args.templates, batch_size=args.batch_size)
    records, lines, panels = [], [], []
    for name, image, row in zip(names, images, probs):
        top = [(classes[i], float(row[i])) for i in _top(row, args.top)]
        records.append(
            {
                "image": name,
                "top": [{"class": c, "prob": p} for c, p in top],
                "probs": dict(zip(classes, map(float, row))),
            }
        )
        lines.append([name, *(f"{c} {p:.3f}" for c, p in top)])
        panels.append((image, "\n".join([_base(name), *(f"{c} {p:.2f}" for c, p in top)])))
    header = ["image", *(f"#{k + 1}" for k in range(min(args.top, len(classes))))]
    return Result(_table(header, lines), records, panels)


def _rank(predictor, args, names, images) -> Result:
    if args.text:
        ranking = predictor.rank_images(args.text, images, batch_size=args.batch_size)
        candidates, query = names, {"text": args.text}
    else:
        ranking = predictor.rank_texts(images[0], args.texts)
        candidates, query = list(args.texts), {"image": names[0]}
    shown = ranking.order[: args.top] if args.top else ranking.order
    records, lines = [], []
    for rank, i in enumerate(shown, 1):
        score, prob = float(ranking.scores[i]), float(ranking.probs[i])
        key = "image" if args.text else "text"
        records.append({**query, "rank": rank, key: candidates[i], "score": score, "prob": prob})
        lines.append([str(rank), f"{score:.4f}", f"{prob:.3f}", candidates[i]])
    header = ["rank", "cosine", "prob", "image" if args.text else "text"]
    if args.text:
        panels = [(images[i], f"#{r} {float(ranking.scores[i]):.3f} {_base(names[i])}") for r, i in enumerate(shown, 1)]
        title = f"images ranked for {args.text!r}"
    else:
        titles = [f"#{r} {float(ranking.scores[i]):.3f} {_short(candidates[i])}" for r, i in enumerate(shown[:6], 1)]
        panels, title = [(images[0], "\n".join([_base(names[0]), *titles]))], None
    first = f"images ranked for {args.text!r}" if args.text else f"texts ranked for {names[0]}"
    return Result(first + "\n" + _table(header, lines), records, panels, title)


def _answer(predictor, args, names, images) -> Result:
    answers = predictor.answer(images, args.question, top_k=args.top, batch_size=args.batch_size)
    records, lines, panels = [], [], []
    for name, image, top in zip(names, images, answers):
        records.append(
            {"image": name, "question": args.question, "answers": [{"answer": a, "prob": p} for a, p in top]}
        )
        lines.append([name, *(f"{a} {p:.3f}" for a, p in top)])
        panels.append((image, "\n".join([_base(name), *(f"{a} {p:.2f}" for a, p in top)])))
    header = ["image", *(f"#{k + 1}" for k in range(len(answers[0])))]
    return Result(f"question: {args.question}\n" + _table(header, lines), records, panels, _short(args.question, 80))


def _caption(predictor, args, names, images) -> Result:
    captions = predictor.caption(images, batch_size=args.batch_size)
    records = [{"image": n, "caption": c} for n, c in zip(names, captions)]
    panels = [(im, "\n".join([_base(n), *textwrap.wrap(c, 28)[:4]])) for n, im, c in zip(names, images, captions)]
    return Result(_table(["image", "caption"], [[n, c] for n, c in zip(names, captions)]), records, panels)


ACTIONS = {"zeroshot": _zeroshot, "rank": _rank, "answer": _answer, "caption": _caption}


def _top(row, k: int) -> list[int]:
    import numpy as np

    return list(np.argsort(-np.asarray(row), kind="stable")[:k])


def _base(name: str) -> str:
    """A file's name without its folder, shortened for a panel title."""
    return _short(os.path.basename(name) or name, 28)


def _short(text: str, width: int = 32) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last column is not padded."""
    cols = max(len(header), *(len(r) for r in rows)) if rows else len(header)
    cells = [list(header) + [""] * (cols - len(header))] + [list(r) + [""] * (cols - len(r)) for r in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(cols)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells)


def draw(panels: Sequence, path: str, title: str | None = None) -> None:
    """Images with their titles in a grid (at most MAX_PANELS), saved as a PNG. Uses matplotlib's Agg canvas
    directly (no pyplot), so it neither needs a display nor changes the backend of a running session."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = list(panels)[:MAX_PANELS]
    cols = min(len(shown), 4)
    rows = math.ceil(len(shown) / cols)
    lines = max((str(text).count("\n") + 1 for _, text in shown), default=1)
    fig = Figure(figsize=(2.8 * cols, (2.6 + 0.17 * lines) * rows + (0.4 if title else 0)))
    FigureCanvasAgg(fig)
    for i, (image, text) in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image)
        ax.set_title(text, fontsize=8)
        ax.axis("off")
    more = f" (first {MAX_PANELS} of {len(panels)})" if len(panels) > MAX_PANELS else ""
    if title or more:
        fig.suptitle((title or "") + more, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
