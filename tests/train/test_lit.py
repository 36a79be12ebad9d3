"""LiT on Fashion-MNIST-format data: classes held out of training, zero-shot evaluation that reports them apart.

The data is a small synthetic set written in Fashion-MNIST's IDX format, so these tests need neither the Debian
package nor a download.
"""

from __future__ import annotations

import gzip
import json
import pathlib

import jax
import numpy as np
import pytest
from train_testing import REPO, tiny_overrides

from mmjax import config as mmconfig
from mmjax import data as mmdata
from mmjax.data.real_datasets import FASHION_MNIST_CLASSES
from mmjax.train.inputs import data_config
from mmjax.train.loop import train

LIT = f"{REPO}/configs/lit_fashion.py:tiny"


def _write_idx(path: pathlib.Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> str:
    """Train 80 / test 40 28x28 images, labels cycling through the ten classes."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 80), ("t10k", 40)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return str(root)


def _config(fashion_dir, tmp_path, *overrides):
    return mmconfig.load_config(LIT, tiny_overrides(str(tmp_path / "tfds"), f"data.path={fashion_dir}", *overrides))


def test_held_out_classes_never_reach_training_but_are_evaluated(fashion_dir, tmp_path):
    config = _config(fashion_dir, tmp_path, "data.num_epochs=1", "batch_size=8")
    heldout = set(config.data.holdout_labels)
    seen_train = set()
    for batch in mmdata.build_pipeline(data_config(config), "train", train=True):
        seen_train |= set(np.asarray(batch["label"]).tolist())
    assert seen_train == set(range(10)) - heldout  # every other class still trains: 56 of the 80 records
    seen_eval = set()
    for batch in mmdata.build_pipeline(data_config(config), "test", train=False):
        seen_eval |= set(np.asarray(batch["label"])[np.asarray(batch["example_mask"]) > 0].tolist())
    assert seen_eval == set(range(10))


def test_a_held_out_label_outside_the_classes_fails_naming_it(fashion_dir, tmp_path):
    config = _config(fashion_dir, tmp_path, "data.holdout_labels=(1, 12)")
    with pytest.raises(ValueError, match=r"holdout_labels \[12\] match no record"):
        mmdata.build_pipeline(data_config(config), "train", train=True)


def test_lit_trains_a_locked_text_tower_and_reports_zero_shot_accuracy(fashion_dir, tmp_path):
    config = _config(fashion_dir, tmp_path, "total_steps=2")
    result = train(config, str(tmp_path / "run"), devices=jax.devices()[:2])
    assert np.isfinite(result["loss"])
    evals = json.loads((tmp_path / "run" / "eval.json").read_text())
    for key in ("top1", "top5", "mean_per_class_top1", "heldout/top1", "heldout/top1_among_subset", "seen/top1"):
        assert 0.0 <= evals[f"zeroshot/{key}"] <= 1.0, key
    assert all(f"zeroshot/per_class_top1/{name}" in evals for name in FASHION_MNIST_CLASSES)
    # 40 test images, 4 per class: seen and held-out accuracies are averages over 28 and 12 of them.
    total = (28 * evals["zeroshot/seen/top1"] + 12 * evals["zeroshot/heldout/top1"]) / 40
    assert total == pytest.approx(evals["zeroshot/top1"])
