"""VQA accuracy: the official leave-one-out form, min(n/3, 1), exact match, normalization, per question type."""

import numpy as np
import pytest

from mmjax.eval import normalize_answer, vqa_metrics, vqa_scores


def _ten(matching: int) -> list[str]:
    return ["dog"] * matching + ["cat"] * (10 - matching)


@pytest.mark.parametrize(
    "matching, expected",
    [
        # official, 10 answers, m matching: (m * min((m-1)/3, 1) + (10-m) * min(m/3, 1)) / 10
        (0, 0.0),
        (1, 0.3),  # (1 * 0 + 9 * 1/3) / 10
        (2, 0.6),  # (2 * 1/3 + 8 * 2/3) / 10 = (2/3 + 16/3) / 10
        (3, 0.9),  # (3 * 2/3 + 7 * 1) / 10
        (4, 1.0),  # (4 * 1 + 6 * 1) / 10
        (10, 1.0),
    ],
)
def test_official_form(matching, expected):
    assert vqa_scores(["dog"], [_ten(matching)])[0] == pytest.approx(expected)


@pytest.mark.parametrize("matching, expected", [(0, 0.0), (1, 1 / 3), (2, 2 / 3), (3, 1.0), (7, 1.0)])
def test_min_form(matching, expected):
    assert vqa_scores(["dog"], [_ten(matching)], form="min")[0] == pytest.approx(expected)


def test_exact_form_for_single_answer_sets():
    scores = vqa_scores(["yes", "circle", "Red.", "", None], ["yes", "square", "red", "blue", ["no"]], form="exact")
    np.testing.assert_array_equal(scores, [1, 0, 1, 0, 0])
    with pytest.raises(ValueError, match="one answer"):
        vqa_scores(["a"], [["a", "b"]], form="exact")


def test_normalization():
    assert normalize_answer("Two Dogs.") == "2 dogs"
    assert normalize_answer("the T-shirt") == "t shirt"
    assert normalize_answer(" 1,000 ") == "1000"
    assert normalize_answer("2.5") == "2.5"
    assert vqa_scores(["Two"], [["2", "2", "2"]], form="min")[0] == 1.0
    assert vqa_scores(["Two"], [["2", "2", "2"]], form="min", normalize=False)[0] == 0.0


def test_empty_predictions_and_answers_score_zero():
    np.testing.assert_array_equal(vqa_scores(["", None, "a", "x"], [_ten(10), _ten(10), ["b"] * 10, []]), [0, 0, 0, 0])


def test_integer_answer_ids_with_padding():
    answers = np.array([[5, 5, 5, 2, -1, -1], [7, -1, -1, -1, -1, -1], [1, 2, 3, 4, 5, 6]])
    # q0: 4 answers, m=3: (3 * min(2/3, 1) + 1 * min(1, 1)) / 4 = (2 + 1) / 4 = 0.75
    # q1: 1 answer (no leave-one-out subset) -> min form: min(1/3, 1)
    # q2: predicted 9 matches nothing
    np.testing.assert_allclose(vqa_scores(np.array([5, 7, 9]), answers), [0.75, 1 / 3, 0.0])


def test_per_question_type():
    predictions = ["2", "red", "", "yes"]
    answers = [["two"] * 3 + ["3"] * 7, ["red"] * 10, ["blue"] * 10, ["yes"] + ["no"] * 9]
    # scores: m=3 of 10 -> 0.9 ("two" normalizes to "2"); m=10 -> 1; empty -> 0; m=1 -> 0.3
    metrics = vqa_metrics(predictions, answers, question_types=[2, 0, 0, 1], type_names=["color", "yes/no", "count"])
    assert metrics == pytest.approx(
        {
            "vqa/accuracy": (0.9 + 1 + 0 + 0.3) / 4,
            "vqa/accuracy/color": (1 + 0) / 2,
            "vqa/accuracy/yes/no": 0.3,
            "vqa/accuracy/count": 0.9,
        }
    )
    by_name = vqa_metrics(["a"], [["a"]], question_types=["shape"], form="exact", prefix="shapes_vqa")
    assert by_name == {"shapes_vqa/accuracy": 1.0, "shapes_vqa/accuracy/shape": 1.0}


def test_a_question_without_a_type_is_unknown_not_the_last_type():
    from mmjax.eval import accuracy_by_type

    metrics = accuracy_by_type([1.0, 0.0, 0.5], [0, -1, 1], ["color", "shape"])
    assert metrics == {"vqa/accuracy/color": 1.0, "vqa/accuracy/shape": 0.5, "vqa/accuracy/unknown": 0.0}
