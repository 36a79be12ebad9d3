"""Markdown table of a VQA run's evaluations: accuracy overall and per question type, one row per eval step.

    python experiments/vqa_table.py --workdir runs/vqa_regions [--workdir runs/vqa_grid ...]

Reads WORKDIR/eval.json (its `history`, written by `mmjax train`), so it needs no model or data.
"""

from __future__ import annotations

import argparse
import json
import pathlib

PREFIX = "vqa/accuracy"


def rows(workdir: pathlib.Path) -> tuple[list[str], list[list[str]]]:
    evals = json.loads((workdir / "eval.json").read_text())
    history = evals.get("history") or {str(evals["step"]): evals}
    steps = sorted(history, key=int)
    # the dataset's order of question types, as the eval wrote them
    types = list(dict.fromkeys(k[len(PREFIX) + 1 :] for s in steps for k in history[s] if k.startswith(PREFIX + "/")))
    keys = [PREFIX] + [f"{PREFIX}/{t}" for t in types]
    body = [[workdir.name, s] + [f"{history[s].get(k, float('nan')):.3f}" for k in keys] for s in steps]
    return ["run", "step", "overall", *types], body


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", action="append", required=True)
    args = parser.parse_args()
    for workdir in args.workdir:
        header, body = rows(pathlib.Path(workdir))
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in body:
            print("| " + " | ".join(row) + " |")
        print()


if __name__ == "__main__":
    main()
