"""VQA accuracy: the human-consensus score, plain accuracy for single-answer sets, and accuracy per question type.

Forms (`form=`), for a question whose n human answers contain the prediction m times:
  "official"  the VQA v2 evaluation: the average over the n leave-one-out subsets of n-1 answers of
              min(matches in the subset / 3, 1). In closed form
                  (m * min((m - 1) / 3, 1) + (n - m) * min(m / 3, 1)) / n,
              which for n = 10 gives m = 0, 1, 2, 3, >=4 -> 0, 0.3, 0.6, 0.9, 1. With n < 2 there is no
              leave-one-out subset and the score falls back to "min".
  "min"       min(m / 3, 1) over all n answers (the short form quoted in papers): m = 1, 2, >=3 -> 1/3, 2/3, 1.
  "exact"     single-answer sets (easy-VQA, shapes): 1 if the prediction equals the one answer, else 0.

Answers are compared as given when they are integers (answer-vocabulary ids from a classifier head; negative ids
are padding, so a [N, 10] int array with -1 fill works) and, when they are strings, after `normalize_answer`
(with normalize=True). An empty prediction ("" or None) matches nothing and scores 0; a question with no answers
scores 0. These are cheap host-side numpy/Python computations on the model's decoded predictions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

FORMS = ("official", "min", "exact")

_NUMBER_WORDS = {word: str(i) for i, word in enumerate("zero one two three four five six seven eight nine ten".split())}
_ARTICLES = frozenset({"a", "an", "the"})
_PERIOD_NOT_IN_NUMBER = re.compile(r"(?<!\d)\.|\.(?!\d)")
_COMMA_IN_NUMBER = re.compile(r"(?<=\d),(?=\d)")
_PUNCTUATION = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$'~|:]")


def normalize_answer(answer: str) -> str:
    """Lowercase, drop punctuation (keeping "2.5" and turning "1,000" into "1000"), number words zero..ten to
    digits, drop the articles a/an/the, collapse whitespace. A documented subset of the official VQA answer
    processing (it has no contraction table): "Two Dogs." -> "2 dogs", "the T-shirt" -> "t shirt".
    """
    text = _COMMA_IN_NUMBER.sub("", answer.lower().strip())
    text = _PERIOD_NOT_IN_NUMBER.sub("", text)
    text = _PUNCTUATION.sub(" ", text)
    words = [_NUMBER_WORDS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


def _answer_list(answers) -> list:
    """One question's answers as a list: a single answer, a sequence of them, or an int row with negative padding."""
    if isinstance(answers, str) or np.ndim(answers) == 0:
        answers = [answers]
    return [a for a in np.asarray(answers, dtype=object).tolist() if not (isinstance(a, (int, np.integer)) and a < 0)]


def _canonical(answer, normalize: bool):
    if answer is None:
        return None
    if isinstance(answer, (str, np.str_)):
        if not answer.strip():
            return None  # an empty answer never matches
        return normalize_answer(str(answer)) if normalize else str(answer)
    return int(answer)


def _consensus(matches: int, n: int, form: str) -> float:
    if n == 0:
        return 0.0
    if form == "min" or n < 2:
        return min(matches / 3, 1.0)
    return (matches * min((matches - 1) / 3, 1.0) + (n - matches) * min(matches / 3, 1.0)) / n


def vqa_scores(
    predictions: Sequence, answers: Sequence, *, form: str = "official", normalize: bool = True
) -> np.ndarray:
    """Per-question accuracy in [0, 1].

    Args:
      predictions: [N] predicted answers, strings or int answer ids ("" / None for no answer).
      answers: [N] per question: a sequence of human answers ("official"/"min"), or one answer ("exact"); strings or
        ints, or an [N, n] int array whose negative entries are padding.
      form: "official", "min" or "exact" (module docstring).
      normalize: apply `normalize_answer` to string answers and predictions.

    Returns: [N] float64 scores.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} questions")
    scores = np.zeros(len(predictions), np.float64)
    for i, (prediction, question_answers) in enumerate(zip(predictions, answers)):
        gold = [_canonical(a, normalize) for a in _answer_list(question_answers)]
        if form == "exact" and len(gold) > 1:
            raise ValueError(f"form='exact' takes one answer per question; question {i} has {len(gold)}")
        predicted = _canonical(prediction, normalize)
        if predicted is None:
            continue
        if form == "exact":
            scores[i] = float(bool(gold) and predicted == gold[0])
        else:
            scores[i] = _consensus(sum(predicted == g for g in gold), len(gold), form)
    return scores


def accuracy_by_type(
    scores: np.ndarray, question_types: Sequence, type_names: Sequence[str] | None = None, *, prefix: str = "vqa"
) -> dict[str, float]:
    """Mean score per question type: scores [N], question_types [N] (ids or names) -> {f"{prefix}/accuracy/{type}"}.

    `type_names[i]` names integer type id i; an id outside them (-1: the record had none) is "unknown"; types
    with no questions are absent.
    """
    scores = np.asarray(scores, np.float64)
    types = np.asarray(question_types)
    if types.shape != scores.shape:
        raise ValueError(f"question_types must be [N] = {scores.shape}, got {types.shape}")
    metrics = {}
    for t in sorted(set(types.tolist())):
        if isinstance(t, int) and (t < 0 or (type_names is not None and t >= len(type_names))):
            name = "unknown"
        else:
            name = type_names[t] if type_names is not None and isinstance(t, int) else str(t)
        metrics[f"{prefix}/accuracy/{name}"] = float(scores[types == t].mean())
    return metrics


def vqa_metrics(
    predictions: Sequence,
    answers: Sequence,
    *,
    question_types: Sequence | None = None,
    type_names: Sequence[str] | None = None,
    form: str = "official",
    normalize: bool = True,
    prefix: str = "vqa",
) -> dict[str, float]:
    """Overall f"{prefix}/accuracy" (mean of `vqa_scores`) and, given question_types, f"{prefix}/accuracy/{type}".

    Shapes as in `vqa_scores`; question_types [N] int ids (named through type_names) or strings. An empty set of
    questions gives NaN.
    """
    scores = vqa_scores(predictions, answers, form=form, normalize=normalize)
    metrics = {f"{prefix}/accuracy": float(scores.mean()) if scores.size else float("nan")}
    if question_types is not None:
        metrics.update(accuracy_by_type(scores, question_types, type_names, prefix=prefix))
    return metrics
