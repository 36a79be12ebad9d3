"""Every task trains and evaluates through the one loop; the pieces the tasks add behave as documented."""

from __future__ import annotations

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_testing import REPO, tiny_overrides

from mmjax import config as mmconfig
from mmjax.data.shapes import ANSWERS
from mmjax.encoders.regions import crop_regions
from mmjax.train import tasks
from mmjax.train.loop import train
from mmjax.train.task_pretrain import mask_tokens, mismatch_images

CASES = {
    "vqa_visualbert_grid": ("vqa_shapes.py:tiny", ["vqa/accuracy", "vqa/accuracy/color"]),
    "vqa_visualbert_regions_relations_stage": (
        "vqa_shapes.py:tiny,visual=regions,stage=relations",
        ["vqa/accuracy", "vqa/accuracy/left_of", "vqa/accuracy/color"],  # trained on relations, evaluated on all
    ),
    "vqa_fusion_regions_mid": ("vqa_shapes.py:tiny,model=fusion,visual=regions,fusion=mid", ["vqa/accuracy"]),
    "vqa_easy": ("vqa_easy.py:tiny", ["vqa/accuracy", "vqa/accuracy/shape", "vqa/accuracy/yes/no"]),
    "pretrain": ("pretrain_shapes.py:tiny", ["pretrain/mlm_accuracy", "pretrain/itm_accuracy"]),
    "captioning": ("caption_shapes.py:tiny", ["captioning/bleu4", "captioning/cider"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_task_trains_and_evaluates(case, data_dir, tmp_path):
    spec, keys = CASES[case]
    config = mmconfig.load_config(f"{REPO}/configs/{spec}", tiny_overrides(data_dir, "total_steps=2"))
    result = train(config, str(tmp_path), devices=jax.devices()[:2])
    assert math.isfinite(result["loss"]) and result["grad_norm"] > 0
    evals = json.loads((pathlib.Path(tmp_path) / "eval.json").read_text())
    assert evals["step"] == 2
    for key in keys:
        assert key in evals and 0.0 <= evals[key] <= 1.0, (key, evals)


def test_classification_task_reads_the_configured_label(data_dir, tmp_path):
    overrides = ["task=classification", "model.head=classification"]
    config = mmconfig.load_config(
        f"{REPO}/configs/vqa_shapes.py:tiny,model=fusion,fusion=late",
        tiny_overrides(data_dir, *overrides, "total_steps=2"),
    )
    config.model.num_classes = len(ANSWERS)  # classify (image, question) pairs by their answer id
    config.model.label_key = "answer"
    result = train(config, str(tmp_path), devices=jax.devices()[:1])
    assert "eval/classification/accuracy" in result


def test_mask_tokens_follows_bert_rates_and_spares_special_tokens():
    ids = jnp.tile(jnp.arange(10, 74), (64, 1)).at[:, 0].set(1).at[:, -8:].set(0)  # [CLS]=1 ... [PAD]=0
    mask = (ids != 0).astype(jnp.int32)
    masked, chosen = mask_tokens(jax.random.key(0), ids, mask, mask_id=5, vocab_size=100, special_ids=(0, 1))
    chosen = np.asarray(chosen)
    assert not chosen[:, 0].any() and not chosen[:, -8:].any()  # special and padding never chosen
    assert 0.13 < chosen.sum() / np.asarray(mask[:, 1:]).sum() < 0.17
    replaced = np.asarray(masked)[chosen]
    assert 0.75 < np.mean(replaced == 5) < 0.85
    np.testing.assert_array_equal(np.asarray(masked)[~chosen], np.asarray(ids)[~chosen])


def test_mismatch_images_labels_exactly_the_swapped_pairs():
    images = jnp.arange(8.0)[:, None, None, None] * jnp.ones((8, 2, 2, 3))
    swapped, labels = mismatch_images(jax.random.key(1), images)
    moved = np.asarray(swapped[:, 0, 0, 0]) != np.arange(8)
    np.testing.assert_array_equal(moved, np.asarray(labels).astype(bool))
    assert 0 < int(labels.sum()) < 8


def test_crop_regions_resamples_each_box():
    image = np.zeros((1, 16, 16, 3), np.float32)
    image[0, 4:8, 8:12] = [1.0, 0.5, 0.25]  # a uniform block at x in [0.5, 0.75), y in [0.25, 0.5)
    boxes = jnp.array([[[0.5, 0.25, 0.75, 0.5], [0.0, 0.0, 1.0, 1.0]]])
    crops = np.asarray(crop_regions(jnp.asarray(image), boxes, size=4)).reshape(1, 2, 4, 4, 3)
    np.testing.assert_allclose(crops[0, 0], np.broadcast_to([1.0, 0.5, 0.25], (4, 4, 3)), atol=1e-6)
    np.testing.assert_allclose(crops[0, 1].mean(axis=(0, 1)), image[0].mean(axis=(0, 1)), atol=0.05)


def test_a_text_table_smaller_than_the_tokenizer_fails_naming_both(data_dir):
    from mmjax.train.tasks import build_task

    config = mmconfig.load_config(f"{REPO}/configs/vqa_shapes.py:tiny", tiny_overrides(data_dir))
    config.data.tokenizer.update({"kind": "clip", "path": None})
    with pytest.raises(ValueError, match=r"'model.text.vocab_size' is 76, smaller than the 49408 ids"):
        build_task(config)


def test_a_fusion_tower_that_does_not_fit_the_visual_inputs_fails_naming_both_keys(data_dir):
    config = mmconfig.load_config(
        f"{REPO}/configs/vqa_shapes.py:tiny,model=fusion,visual=regions", tiny_overrides(data_dir, "model.visual=grid")
    )
    with pytest.raises(ValueError, match=r"'model.image.name' is 'regions' but 'model.visual' is 'grid'"):
        tasks.build_task(config)
