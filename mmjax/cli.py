"""`mmjax train | eval | sweep | bench | config | convert | predict` (also `python -m mmjax ...`).

mmjax train --config configs/clip_shapes.py[:variant] --workdir runs/x [--config.key=value ...]
mmjax eval  --workdir D [--config F] [--evals retrieval] [--split test] [--step 480]
mmjax sweep --config F --workdir D [--dry_run]          # points declared by get_sweep() in F
mmjax bench --config F [--steps 20]                      # steady-state step time etc., as JSON
mmjax config show F [--docs]                             # the fully resolved config (every key, its doc)
mmjax configs [DIR]                                      # every config file, its variants, what it trains
mmjax convert --path DIR --to DIR2                       # HF (CLIP, SigLIP, BERT, ...) or open_clip dir -> HF
mmjax predict --workdir D zeroshot --images DIR --classes red blue [--jsonl OUT] [--show OUT.png]  # mmjax/predict

Any key of the resolved config can be overridden: --config.optim.lr=3e-4 --config.model.image.depth=2.
A config mistake is one line on stderr naming the key, and exit code 2, before any training step.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
from collections.abc import Callable

OVERRIDES_HELP = (
    "Any key of the resolved config can be overridden after the arguments, e.g. --config.optim.lr=3e-4 "
    "--config.model.image.depth=2 --config.evals.retrieval.split=test; `mmjax config show F --docs` lists every key."
)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes, not the one it was created with (notebooks and test
    runners swap it; a handler holding a closed stream would fail every later log call)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        del value


def _configure_logging(verbosity: int) -> None:
    """The terminal shows mmjax's own messages (the run's header, evaluations, warnings) and errors from the
    libraries; with --verbosity 1 every library's warnings and info too. A training run also writes everything
    to workdir/train.log (see mmjax.train.metrics.log_file)."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    for handler in [h for h in root.handlers if getattr(h, "mmjax_terminal", False)]:
        root.removeHandler(handler)  # main() called again in one process (tests, notebooks)
    terminal = _StderrHandler()
    terminal.mmjax_terminal = True
    terminal.setFormatter(logging.Formatter("%(message)s" if verbosity == 0 else "%(levelname)s %(name)s: %(message)s"))
    floor = logging.ERROR if verbosity == 0 else logging.INFO

    def shown(record: logging.LogRecord) -> bool:
        return record.levelno >= floor or (record.name.startswith("mmjax") and record.levelno >= logging.INFO)

    terminal.addFilter(shown)
    root.addHandler(terminal)
    if verbosity == 0:
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()  # TFDS's bars for data generated locally: our own log line says it


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmjax", description="Multimodal models in JAX: train, evaluate, sweep, bench.", epilog=OVERRIDES_HELP
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbosity", type=int, default=0, help="0: quiet (default), 1: library logs, 2: debug")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("train", "train (resumes from the workdir's newest checkpoint)"),
        ("eval", "evaluate the newest checkpoint into workdir/eval.json"),
        ("sweep", "train every point of the config's sweep into workdir/<point>/"),
        ("bench", "time the train step and print JSON"),
    ]:
        s = sub.add_parser(name, help=help_text, epilog=OVERRIDES_HELP, parents=[common])
        s.add_argument(
            "--config",
            required=name != "eval",
            help="config file, optionally with a variant: file.py:tiny"
            + (" (eval: default, the config the checkpoint was saved with)" if name == "eval" else ""),
        )
        if name != "bench":
            s.add_argument("--workdir", required=True)
        if name == "eval":
            s.add_argument("--split", default=None, help="evaluate this split instead of each evaluator's own")
            s.add_argument("--evals", nargs="+", default=None, help="names in config.evals (default: all)")
            s.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
        if name == "sweep":
            s.add_argument("--dry_run", action="store_true", help="list the points and exit")
        if name == "bench":
            s.add_argument("--steps", type=int, default=20, help="timed steps after warm-up")
            s.add_argument("--warmup", type=int, default=3)
            s.add_argument("--data", action="store_true", help="also time the input pipeline alone")
    listing = sub.add_parser("configs", help="list the config files, their variants and what each is", parents=[common])
    listing.add_argument("dir", nargs="?", default="configs", help="the folder of config files (default: configs)")
    show = sub.add_parser("config", help="print the fully resolved config").add_subparsers(dest="action", required=True)
    s = show.add_parser("show", help="every key of the resolved config, one per line", parents=[common])
    s.add_argument("file", nargs="?", help="config file, optionally with a variant: file.py:tiny")
    s.add_argument("--config", help="the same, as a flag")
    s.add_argument("--docs", action="store_true", help="append each key's one-line doc")
    c = sub.add_parser(
        "convert", help="load a Hugging Face directory and write it back out (or to another dir)", parents=[common]
    )
    c.add_argument("--path", required=True)
    c.add_argument("--to", required=True)
    from mmjax.predict.command import add_arguments as add_predict_arguments

    add_predict_arguments(
        sub.add_parser("predict", help="zero-shot, ranking, answers, captions on your images", parents=[common])
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    known, overrides = _parser().parse_known_args(argv)
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        _parser().error(f"unrecognized arguments: {' '.join(bad)} (overrides look like --config.key=value)")
    _configure_logging(known.verbosity)
    from mmjax import config as mmconfig

    if known.command not in ("convert", "config", "configs"):
        from mmjax import distributed

        # Joins a multi-process run (TPU pod, SLURM, MMJAX_* variables) if there is one; it must come before
        # anything starts a JAX backend, which is why it is here and not in the trainer.
        distributed.initialize()
    try:
        if known.command == "convert":
            from mmjax.convert import load_pretrained, save_pretrained

            model, variables = load_pretrained(known.path)
            save_pretrained(model, variables, known.to)
            print(json.dumps({"converted": known.path, "to": known.to, "model": type(model).__name__}))
            return 0
        if known.command == "predict":
            from mmjax.predict.command import run as run_predict

            return run_predict(known)
        if known.command == "sweep":
            from mmjax.train.sweep import run_sweep

            run_sweep(known.config, known.workdir, overrides, dry_run=known.dry_run)
            return 0
        if known.command == "configs":
            print(mmconfig.list_configs(known.dir))
            return 0
        if known.command == "config":
            known.config = known.config or known.file
            if not known.config:
                _parser().error("mmjax config show: give a config file (mmjax config show configs/x.py:tiny)")
        if known.command == "eval" and not known.config:
            from mmjax.train.checkpoint import saved_run_config

            config = mmconfig.make_config(saved_run_config(known.workdir), overrides)
        else:
            config = mmconfig.load_config(known.config, overrides)
        if known.command == "config":
            print(mmconfig.render(config, with_docs=known.docs))
            return 0
        if known.command == "train":
            from mmjax.train.loop import train

            result = train(config, known.workdir)
        elif known.command == "eval":
            from mmjax.train.loop import evaluate

            result = evaluate(config, known.workdir, known.split, evals=known.evals, step=known.step)
        else:
            from mmjax.train.bench import bench

            result = bench(config, steps=known.steps, warmup=known.warmup, data=known.data)
        print(json.dumps(result, sort_keys=True))  # one line: the terminal stays short, scripts still parse it
        return 0
    except mmconfig.ConfigError as e:
        print(f"mmjax: config error: {e}", file=sys.stderr)
        return 2
    except _run_errors() as e:  # a workdir in use, checkpoints that cannot be read or written: one line, no traceback
        print(f"mmjax: error: {e}", file=sys.stderr)
        return 1


def run_script(main: Callable[[], object]) -> None:
    """Run a script's `main` (experiments/*.py) as `mmjax` runs a command: a user's mistake (a config key, a
    workdir without the checkpoint asked for) is one line on stderr and exit status 2 or 1, not a traceback."""
    from mmjax import config as mmconfig

    prog = pathlib.Path(sys.argv[0]).name
    try:
        main()
    except mmconfig.ConfigError as e:
        print(f"{prog}: config error: {e}", file=sys.stderr)
        sys.exit(2)
    except _run_errors() as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(1)


def _run_errors() -> tuple[type[Exception], ...]:
    from mmjax.data import BadRecordError
    from mmjax.train.checkpoint import CheckpointSaveError, NoCheckpoint, NoIntactCheckpoint
    from mmjax.train.lock import WorkdirInUse

    return (WorkdirInUse, NoCheckpoint, NoIntactCheckpoint, CheckpointSaveError, BadRecordError)


if __name__ == "__main__":
    sys.exit(main())
