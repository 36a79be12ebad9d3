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
