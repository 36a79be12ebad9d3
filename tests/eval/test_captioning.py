"""BLEU-4 and CIDEr-D on tiny sentence sets computed by hand; empty predictions score 0."""

import math

import pytest

from mmjax.eval import captioning_metrics, cider_d, cider_d_scores, corpus_bleu, tokenize


def test_tokenize():
    assert tokenize("A dog's ball, RED!") == ["a", "dogs", "ball", "red"]
    assert tokenize("") == [] and tokenize(None) == []


# hypothesis "a cat sat on the mat" against
#   r1 "a cat sat on a mat", r2 "the cat is on the mat"
# 1-grams a cat sat on the mat: all found                         -> 6/6
# 2-grams a-cat, cat-sat, sat-on (r1), on-the, the-mat (r2)       -> 5/5
# 3-grams a-cat-sat, cat-sat-on (r1), on-the-mat (r2); sat-on-the no -> 3/4
# 4-grams a-cat-sat-on (r1); cat-sat-on-the, sat-on-the-mat no     -> 1/3
# c = 6, closest r = 6, BP = 1; BLEU-4 = (1 * 1 * 3/4 * 1/3) ** (1/4) = (1/4) ** (1/4) = 1/sqrt(2)
HYP = "a cat sat on the mat"
REFS = ["A cat sat on a mat.", "the cat is on the mat"]


def test_bleu4_hand_computed():
    assert corpus_bleu([HYP], [REFS]) == pytest.approx(1 / math.sqrt(2))


def test_bleu4_empty_prediction_adds_reference_length():
    # The empty caption adds no n-grams but r grows by 2 ("a dog"): c = 6, r = 8, BP = exp(1 - 8/6)
    assert corpus_bleu([HYP, ""], [REFS, ["a dog"]]) == pytest.approx(math.exp(-1 / 3) / math.sqrt(2))


def test_bleu_brevity_clipping_and_closest_length():
    # every n-gram of "x y z w" is in the reference; c = 4 < r = 6: BP = exp(1 - 6/4)
    assert corpus_bleu(["x y z w"], [["x y z w v u"]]) == pytest.approx(math.exp(-0.5))
    # references of length 3 and 5 are both 1 away from c = 4: the shorter wins, c > r, BP = 1
    assert corpus_bleu(["a b c d"], [["a b c", "a b c d e"]]) == pytest.approx(1.0)
    # clipping: "the" x4 against one "the" -> 1/4 (BLEU-1, c = 4 > r = 2)
    assert corpus_bleu(["the the the the"], [["the cat"]], max_n=1) == pytest.approx(0.25)
    # no matching bigram and no smoothing -> exactly 0
    assert corpus_bleu(["the the the the"], [["the cat"]]) == 0.0


def test_cider_perfect_pair():
    # N = 2 images, idf = log 2 - log df. "a" is in both (idf 0); cat, dog, "a cat", "a dog" in one (idf log 2 = L).
    # image 0: hyp = ref = "a cat": n=1 vec {a: 0, cat: L}, cosine 1; n=2 {a cat: L}, cosine 1; n=3,4 empty: 0.
    # CIDEr-D = 10 * mean(1, 1, 0, 0) / 1 reference = 5; same for image 1.
    assert cider_d(["a cat", "a dog"], [["a cat"], ["a dog"]]) == pytest.approx(5.0)


def test_cider_clipping():
    # image 0: hyp "cat cat" vs ref "a cat" (L = log 2):
    #   n=1 hyp {cat: 2L} (norm 2L), ref {a: 0, cat: L} (norm L): min(2L, L) * L / (2L * L) = 1/2
    #   n=2 "cat cat" not in ref: 0. Equal lengths, penalty 1. CIDEr-D = 10 * (1/2) / 4 = 1.25
    # image 1 is a perfect pair: 5 (as above). Mean (1.25 + 5) / 2.
    scores = cider_d_scores(["cat cat", "a dog"], [["a cat"], ["a dog"]])
    assert scores.tolist() == pytest.approx([1.25, 5.0])


def test_cider_several_references_length_penalty_and_empty_prediction():
    # image 0 refs "a red cat", "a cat"; hyp "a cat". image 1 ref "a dog"; hyp "" (empty).
    # df: a -> 2 images (idf 0); every other n-gram -> 1 (idf L = log 2).
    # vs "a red cat": n=1 hyp {a: 0, cat: L} norm L; ref {a: 0, red: L, cat: L} norm L*sqrt(2):
    #   L*L / (L * L*sqrt(2)) = 1/sqrt(2); n=2 "a cat" not in {a red, red cat}: 0; lengths 2 vs 3:
    #   penalty exp(-1 / (2 * 36)) = exp(-1/72)
    # vs "a cat": identical -> n=1: 1, n=2: 1
    # image 0 = 10 * mean over n of (sum over refs) / 2 refs = 10 * ((1/sqrt(2) e^(-1/72) + 1) + 1 + 0 + 0) / 4 / 2
    # image 1: empty hypothesis -> 0
    image0 = 10 * (2 + math.exp(-1 / 72) / math.sqrt(2)) / 8
    scores = cider_d_scores(["a cat", ""], [["a red cat", "a cat"], ["a dog"]])
    assert scores.tolist() == pytest.approx([image0, 0.0])
    assert image0 == pytest.approx(3.371693, abs=1e-6)


def test_all_empty_predictions_score_zero_and_miss_every_word():
    metrics = captioning_metrics(["", None], [["a cat"], ["a dog", "the dog"]])
    assert metrics == {"captioning/bleu4": 0.0, "captioning/cider": 0.0, "captioning/wer": 1.0}


def test_bad_references_are_an_error():
    with pytest.raises(ValueError, match="non-empty"):
        cider_d(["a"], [[]])
    with pytest.raises(ValueError, match="predictions"):
        corpus_bleu(["a", "b"], [["a"]])
