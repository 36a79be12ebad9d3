"""workdir/eval.json: latest values at the top level, history per step, atomic merges."""

import json
import os

import numpy as np
import pytest

from mmjax.eval import read_eval_json, write_eval_json


def test_merge_history_and_latest(tmp_path):
    write_eval_json(tmp_path, {"a": np.float32(0.5), "b": 2}, step=100)
    write_eval_json(tmp_path, {"a": 0.75}, step=200)
    write_eval_json(tmp_path, {"c": float("nan"), "b": 3}, step=100)  # a second eval at step 100 merges
    content = write_eval_json(tmp_path / "eval.json", {"a": 0.1}, step=50)  # an older step does not win

    assert content == json.loads((tmp_path / "eval.json").read_text()) == read_eval_json(tmp_path)
    assert content == {
        "a": 0.75,
        "b": 3,
        "c": None,
        "step": 200,
        "history": {"50": {"a": 0.1}, "100": {"a": 0.5, "b": 3, "c": None}, "200": {"a": 0.75}},
    }
    assert os.listdir(tmp_path) == ["eval.json"]  # no temporary file left behind


def test_new_workdir_and_reserved_names(tmp_path):
    assert read_eval_json(tmp_path / "missing") == {}
    write_eval_json(tmp_path / "runs" / "x", {"retrieval/text_to_image/recall@1": 1.0}, step=0)
    assert read_eval_json(tmp_path / "runs" / "x")["retrieval/text_to_image/recall@1"] == 1.0
    with pytest.raises(ValueError, match="reserved"):
        write_eval_json(tmp_path, {"step": 1}, step=1)
