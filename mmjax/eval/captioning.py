"""Captioning metrics: corpus BLEU-4 and CIDEr-D, following the definitions of the coco-caption toolkit.

Tokenizer (`tokenize`): lowercase, delete apostrophes ("don't" -> "dont"), turn every other non-alphanumeric
character into a space, split on whitespace. coco-caption uses the Stanford PTB tokenizer and then drops
punctuation tokens; on plain captions the two agree up to contractions.

BLEU-4 (Papineni et al. 2002), corpus level as in coco-caption:
  p_n = sum over captions of clipped n-gram matches / sum over captions of candidate n-grams, n = 1..4, where a
        candidate n-gram's count is clipped to its largest count in any single reference of that image;
  BP  = exp(1 - r / c) if c < r else 1, with c the total candidate length and r the sum over captions of the
        "closest" reference length (the reference length nearest the candidate's; on a tie the shorter one);
  BLEU-4 = BP * exp(mean_n log p_n).
  Smoothing: none. If some order has no match (or no candidate n-gram at all), BLEU-4 is exactly 0; coco-caption
  adds 1e-15 / 1e-9 to numerator / denominator and would report a tiny positive number instead.

CIDEr-D (Vedantam et al. 2015), as in coco-caption's "CIDEr" score:
  each sentence becomes, per order n = 1..4, a vector g_n[w] = count(w) * log(N / max(1, df(w))), with N the number
  of images and df(w) the number of images whose references contain n-gram w (document frequencies come from the
  references of the evaluated set); for a prediction c and each reference s of its image
      sim_n(c, s) = sum_w min(g_n(c)[w], g_n(s)[w]) * g_n(s)[w] / (|g_n(c)| |g_n(s)|) * exp(-(l_c - l_s)^2 / (2 * 6^2))
  (the min is CIDEr-D's clipping, the Gaussian its length penalty with sigma = 6, l the token counts; a zero norm
  gives 0); CIDEr-D(image) = 10 * mean_n (mean over references of sim_n); the corpus score is the mean over images.
  With a single image every df = N and CIDEr-D is 0 by construction: evaluate on a set of images.

Empty predictions score 0 (no crash); an image without references is an error. Host-side Python: cheap.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

MAX_N = 4
CIDER_SIGMA = 6.0
_APOSTROPHE = re.compile(r"['\u2019]")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def tokenize(sentence: str | None) -> list[str]:
    """Lowercase, delete apostrophes, other punctuation to spaces, split: "A dog's ball." -> ["a", "dogs", "ball"]."""
    if not sentence:
        return []
    return _NON_WORD.sub(" ", _APOSTROPHE.sub("", sentence.lower())).split()


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams (tuples of n tokens) of one sentence."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference sets")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"references[{i}] must be a non-empty list of strings, got {refs!r}")


def corpus_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]], max_n: int = MAX_N) -> float:
    """Corpus BLEU-`max_n` (module docstring): predictions [N] strings, references [N] lists of strings -> float."""
    _check(predictions, references)
    matches, totals = np.zeros(max_n), np.zeros(max_n)
    candidate_length = reference_length = 0
    for prediction, refs in zip(predictions, references):
        hyp = tokenize(prediction)
        ref_tokens = [tokenize(r) for r in refs]
        candidate_length += len(hyp)
        reference_length += min((abs(len(r) - len(hyp)), len(r)) for r in ref_tokens)[1]
        for n in range(1, max_n + 1):
            hyp_counts = ngram_counts(hyp, n)
            max_ref_counts: Counter = Counter()
            for r in ref_tokens:
                max_ref_counts |= ngram_counts(r, n)  # | keeps the larger count of each n-gram
            matches[n - 1] += sum(min(c, max_ref_counts[g]) for g, c in hyp_counts.items())
            totals[n - 1] += sum(hyp_counts.values())
    if candidate_length == 0 or np.any(matches == 0):
        return 0.0
    log_precision = float(np.mean(np.log(matches / totals)))
    brevity = 1.0 if candidate_length >= reference_length else math.exp(1.0 - reference_length / candidate_length)
    return brevity * math.exp(log_precision)


def _tfidf(tokens: list[str], df: Counter, log_num_images: float, max_n: int):
    """Per order n: ({n-gram: tf * idf}, L2 norm)."""
    vectors = []
    for n in range(1, max_n + 1):
        vec = {g: c * (log_num_images - math.log(max(1.0, df[g]))) for g, c in ngram_counts(tokens, n).items()}
        vectors.append((vec, math.sqrt(sum(v * v for v in vec.values()))))
    return vectors


def cider_d_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], max_n: int = MAX_N, sigma: float = CIDER_SIGMA
) -> np.ndarray:
    """Per-image CIDEr-D (module docstring): predictions [N] strings, references [N] lists of strings -> [N]."""
    _check(predictions, references)
    ref_tokens = [[tokenize(r) for r in refs] for refs in references]
    df: Counter = Counter()
    for refs in ref_tokens:
        df.update({g for r in refs for n in range(1, max_n + 1) for g in ngram_counts(r, n)})
    log_num_images = math.log(len(references)) if references else 0.0
    scores = np.zeros(len(predictions))
    for i, (prediction, refs) in enumerate(zip(predictions, ref_tokens)):
        hyp = tokenize(prediction)
        hyp_vectors = _tfidf(hyp, df, log_num_images, max_n)
        total = np.zeros(max_n)
        for ref in refs:
            penalty = math.exp(-((len(hyp) - len(ref)) ** 2) / (2 * sigma**2))
            for n, ((h, h_norm), (r, r_norm)) in enumerate(zip(hyp_vectors, _tfidf(ref, df, log_num_images, max_n))):
                if h_norm > 0 and r_norm > 0:
                    dot = sum(min(v, r.get(g, 0.0)) * r.get(g, 0.0) for g, v in h.items())
                    total[n] += dot / (h_norm * r_norm) * penalty
        scores[i] = 10.0 * float(np.mean(total)) / len(refs)
    return scores


def cider_d(predictions: Sequence[str], references: Sequence[Sequence[str]], **kwargs) -> float:
    """Corpus CIDEr-D: the mean of `cider_d_scores` over images (0.0 for an empty set)."""
    scores = cider_d_scores(predictions, references, **kwargs)
    return float(scores.mean()) if scores.size else 0.0


def captioning_metrics(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, prefix: str = "captioning"
) -> dict[str, float]:
    """{f"{prefix}/bleu4", f"{prefix}/cider", f"{prefix}/wer"}: predictions [N] decoded captions, references [N]
    lists of captions. WER (`mmjax.eval.wer`) is the transcription metric: for spoken captions the text is exact."""
    from mmjax.eval.wer import word_error_rate  # wer imports this module's tokenizer

    return {
        f"{prefix}/bleu4": corpus_bleu(predictions, references),
        f"{prefix}/cider": cider_d(predictions, references),
        f"{prefix}/wer": word_error_rate(predictions, references),
    }
