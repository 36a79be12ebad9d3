"""Word error rate, the transcription metric: (substitutions + deletions + insertions) / reference words.

Corpus WER sums edit distances and reference lengths over the set (so long utterances weigh more, as ASR
benchmarks report it), not the mean of per-utterance rates. Words come from the captioning tokenizer (lowercase, no
punctuation), the usual normalisation before scoring. With several references an utterance is scored against the
closest one.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmjax.eval.captioning import tokenize


def edit_distance(hypothesis: Sequence[str], reference: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (unit costs), one row of the table at a time."""
    row = list(range(len(reference) + 1))
    for i, word in enumerate(hypothesis, start=1):
        diagonal, row[0] = row[0], i
        for j, ref in enumerate(reference, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (word != ref))
    return row[-1]


def word_error_rate(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus WER of predictions [N] against references [N] (lists of reference texts)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists")
    errors = words = 0
    for prediction, refs in zip(predictions, references):
        if not refs:
            raise ValueError("an utterance without a reference transcript")
        hyp = tokenize(prediction)
        best = min((tokenize(r) for r in refs), key=lambda ref: (edit_distance(hyp, ref), len(ref)))
        errors += edit_distance(hyp, best)
        words += len(best)
    return errors / words if words else 0.0
