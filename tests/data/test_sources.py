"""Datasets prepared elsewhere, read by TFDS name with a field mapping; bad records found while reading."""

import io
import logging

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from mmjax import data as mmdata
from mmjax.data import pipeline
from mmjax.data.builders import LocalBuilder
from mmjax.data.errors import BadRecordError


def _png(value):
    buf = io.BytesIO()
    Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# Records 0-7 are good; 8 has a corrupt image, 9 an empty caption, 10 a caption longer than the tokenizer's T.
CAPTIONS = [f"picture number {i}" for i in range(8)] + ["fine caption", "  ", "word " * 40]


class CocoLike(LocalBuilder, skip_registration=True):
    """A dataset laid out like TFDS's coco_captions (nested captions, "image/id"), prepared elsewhere."""

    VERSION = tfds.core.Version("1.1.0")
    name = "coco_like"

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Scalar(dtype=np.object_),
                    "image/id": np.int64,
                    "captions": tfds.features.Sequence({"id": np.int64, "text": tfds.features.Text()}),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"val": self._generate_examples()}

    def _generate_examples(self):
        for i, caption in enumerate(CAPTIONS):
            image = _png(10 * i)[:40] if i == 8 else _png(10 * i)
            yield i, {"image": image, "image/id": 1000 + i, "captions": {"id": [i], "text": [caption]}}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    CocoLike(data_dir=data_dir).download_and_prepare(file_format="array_record")
    cfg = mmdata.default_config()
    cfg.update(source="tfds", name="coco_like:1.1.0", data_dir=data_dir, image_size=12, batch_size=4)
    cfg.fields = {"captions": "captions/text", "image_id": "image/id"}
    cfg.tokenizer.max_length = 16
    cfg.text_overflow = "error"
    return cfg


def _all_examples(it):
    out = []
    for batch in it:
        out += [
            (int(i), int(image_id))
            for i, image_id, m in zip(batch["index"], batch["image_id"], batch["example_mask"])
            if m
        ]
    return out


def test_tfds_by_name_with_field_mapping_skips_and_counts_bad_records(config, caplog):
    it = pipeline.build_pipeline(config, "val", train=False)
    with caplog.at_level(logging.WARNING):
        examples = _all_examples(it)
    # TFDS shuffles records when writing: positions are a permutation, image ids are what we wrote.
    assert len({i for i, _ in examples}) == 8 and all(0 <= i < 11 for i, _ in examples)
    assert sorted(image_id for _, image_id in examples) == [1000 + i for i in range(8)]
    assert it.num_skipped == 3 and it.get_state()["num_skipped"] == 3
    for image_id, reason in ((1008, "Error"), (1009, "empty text"), (1010, "overlong text: 42 tokens > 16")):
        assert f"image_id={image_id}" in caplog.text and reason in caplog.text
    assert "coco_like:1.1.0/val[" in caplog.text


def test_tfds_bad_records_fail_naming_the_record(config):
    cfg = config.copy_and_resolve_references()
    cfg.bad_records = "fail"
    # The first bad record met (by position, which TFDS shuffled) fails the pass, naming where it is.
    with pytest.raises(BadRecordError, match=r"^coco_like:1.1.0/val\[\d+\] image_id=10(08|09|10): \w+Error"):
        _all_examples(pipeline.build_pipeline(cfg, "val", train=False))


def test_overlong_text_truncates_by_default(config):
    cfg = config.copy_and_resolve_references()
    cfg.text_overflow = "truncate"
    it = pipeline.build_pipeline(cfg, "val", train=False)
    assert len(_all_examples(it)) == 9 and it.num_skipped == 2


def test_config_errors_name_the_key(config):
    for key, value, match in [
        ("source", "imagenet", "data.source"),
        ("bad_records", "ignore", "data.bad_records"),
        ("captions", "longest", "data.captions"),
        ("batch_size", 3, "data.batch_size"),
    ]:
        cfg = config.copy_and_resolve_references()
        cfg[key] = value
        with pytest.raises(ValueError, match=match):
            pipeline.build_pipeline(cfg, "val", shard_options=pipeline.grain.sharding.ShardOptions(0, 2))


def _take(it, n):
    return [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(n)]


def test_bad_records_keep_their_slot_in_training_under_any_process_count(config):
    """Training: a bad record's slot takes the next good record of the epoch's order, so no other row moves,
    batches hold only real examples, and the batches are the same for 1, 2 or 4 processes."""
    cfg = config.copy_and_resolve_references()
    cfg.shuffle = False  # positions in split order, so the stand-ins can be predicted
    # Which positions are bad (TFDS shuffled the records when writing): the masked rows of an eval pass.
    evaluated = list(pipeline.build_pipeline(cfg, "val", train=False))
    mask = np.concatenate([b["example_mask"] for b in evaluated])[:11]
    assert (np.concatenate([b["index"] for b in evaluated])[:11][mask == 0] == -1).all() and mask.sum() == 8
    good = [g for g in range(11) if mask[g]]
    stand_in = [g if mask[g] else min((h for h in good if h > g), default=good[0]) for g in range(11)]
    it = pipeline.build_pipeline(cfg, "val", train=True)
    batches = _take(it, 5)  # 20 positions: epoch 1, then 9 of epoch 2
    assert all((b["example_mask"] == 1).all() for b in batches)
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), (stand_in * 2)[:20])
    assert it.num_skipped == 3 + sum(not m for m in mask[:9]) and it.get_state()["num_skipped"] == it.num_skipped

    cfg.shuffle = True
    one = pipeline.build_pipeline(cfg, "val", train=True)
    expected = _take(one, 6)  # 24 positions: two epochs and 2 positions of a third
    assert 6 <= one.num_skipped <= 8
    for n in (2, 4):
        its = [
            pipeline.build_pipeline(cfg, "val", train=True, shard_options=pipeline.grain.sharding.ShardOptions(i, n))
            for i in range(n)
        ]
        local = [_take(p, 6) for p in its]
        for step, want in enumerate(expected):
            for k in want:
                np.testing.assert_array_equal(np.concatenate([p[step][k] for p in local]), want[k], err_msg=k)
        # Without a mesh each process counts the bad slots of its own rows; together, every one.
        assert sum(p.num_skipped for p in its) == one.num_skipped


def test_bad_records_are_masked_in_evaluation_under_any_process_count(config):
    expected = list(pipeline.build_pipeline(config, "val", train=False))
    assert len(expected) == 3 and sum(int((b["example_mask"] == 0).sum()) for b in expected) == 4  # 3 bad + 1 pad
    its = [
        pipeline.build_pipeline(config, "val", train=False, shard_options=pipeline.grain.sharding.ShardOptions(i, 2))
        for i in range(2)
    ]
    local = [list(p) for p in its]
    for step, want in enumerate(expected):
        for k in want:
            np.testing.assert_array_equal(np.concatenate([p[step][k] for p in local]), want[k], err_msg=k)
    assert sum(p.num_skipped for p in its) == 3


def test_skips_are_counted_over_every_process_rows_on_a_mesh(config):
    """With a mesh spanning processes, skips are summed on the devices so every process knows the global count;
    forced here in one process (whose rows are all local, so it would count on the host)."""
    import jax

    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:4])
    it = pipeline.build_pipeline(config, "val", train=False, mesh=mesh)
    it._count_on_devices = True
    batches = list(it)
    assert len(batches) == 3 and it.num_skipped == 3 and it.get_state() == {"batches": 3, "num_skipped": 3}
    on_host = pipeline.build_pipeline(config, "val", train=False)
    next(on_host)
    it.set_state(on_host.get_state())  # after the first batch, with its skips
    assert len(list(it)) == 2 and it.num_skipped == 3
