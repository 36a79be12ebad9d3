"""Word error rate: edit distances counted by hand."""

from __future__ import annotations

import pytest

from mmjax.eval import edit_distance, word_error_rate


def test_edit_distance_counts_substitutions_deletions_and_insertions():
    ref = "a large blue cross at the top".split()
    assert edit_distance(ref, ref) == 0
    assert edit_distance("a large red cross at the top".split(), ref) == 1  # one substitution
    assert edit_distance("a blue cross at the top".split(), ref) == 1  # one deletion
    assert edit_distance("a large blue cross at the very top".split(), ref) == 1  # one insertion
    assert edit_distance([], ref) == len(ref) and edit_distance(ref, []) == len(ref)
    assert edit_distance("b a".split(), "a b".split()) == 2  # a swap is two edits, not one


def test_corpus_wer_sums_errors_over_reference_words_and_normalises_text():
    predictions = ["A large blue cross, at the top.", "a small cat"]
    references = [["a large blue cross at the top"], ["a small red circle"]]
    # 0 errors in 7 words, then 2 (red circle -> cat: one substitution, one deletion) in 4
    assert word_error_rate(predictions, references) == pytest.approx(2 / 11)


def test_wer_scores_against_the_closest_reference():
    assert word_error_rate(["the dog"], [["a cat sat", "the dog"]]) == 0.0


def test_wer_refuses_mismatched_or_missing_references():
    with pytest.raises(ValueError, match="2 predictions for 1"):
        word_error_rate(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="without a reference"):
        word_error_rate(["a"], [[]])
