"""Every builder prepares offline into array_record and reads back without TensorFlow."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from mmjax.data import builders, jsonl, real_datasets, shapes
from mmjax.data.errors import BadRecordError
from mmjax.data.preprocess import decode_image

TINY = dict(num_train=12, num_validation=3, num_test=3, num_compositional=3, image_size=32)


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def test_shapes_image_text_prepares_and_reads_back(tmp_path):
    builder = builders.prepare(builders.shapes_builder(str(tmp_path), **TINY))
    sizes = {split: len(builder.as_data_source(split)) for split in shapes.SPLITS}
    assert sizes == {"train": 12, "validation": 3, "test": 3, "compositional": 3}
    for rec in builder.as_data_source("train"):
        want = shapes.generate(0, "train", int(rec["image_id"]), image_size=32)
        np.testing.assert_array_equal(decode_image(rec["image"]), want["image"])
        assert [_text(c) for c in rec["captions"]] == want["captions"]
        np.testing.assert_array_equal(rec["boxes"], want["boxes"])
        np.testing.assert_array_equal(rec["labels"], want["labels"])
    assert builder.info.metadata["answers"] == list(shapes.ANSWERS)


def test_shapes_same_seed_same_bytes_on_disk(tmp_path):
    def record_bytes(root):
        out = {}
        for dirpath, _, files in os.walk(root):
            for name in files:
                if "array_record" in name:
                    with open(os.path.join(dirpath, name), "rb") as f:
                        out[name] = f.read()
        return out

    builders.prepare(builders.shapes_builder(str(tmp_path / "a"), **TINY))
    builders.prepare(builders.shapes_builder(str(tmp_path / "b"), **TINY))
    a, b = record_bytes(tmp_path / "a"), record_bytes(tmp_path / "b")
    assert a and a == b


def test_shapes_vqa_one_record_per_question(tmp_path):
    builder = builders.prepare(builders.shapes_builder(str(tmp_path), task="vqa", **TINY))
    records = list(builder.as_data_source("train"))
    want = sum(len(shapes.generate(0, "train", i, 32)["qa"]) for i in range(12))
    assert len(records) == want
    for rec in records:
        qa = shapes.generate(0, "train", int(rec["image_id"]), 32)["qa"]
        assert (_text(rec["question"]), _text(rec["answer"]), _text(rec["question_type"])) in qa


def test_easy_vqa(tmp_path):
    if real_datasets.easy_vqa_dir() is None:
        pytest.skip("easy-VQA is not installed: pip install easy-vqa")
    builder = builders.prepare(real_datasets.easy_vqa_builder(str(tmp_path), limit=20))
    train = builder.as_data_source("train")
    assert len(train) == 20 and len(builder.as_data_source("test")) == 20
    answers = builder.info.metadata["answers"]
    assert len(answers) == 13 and "yes" in answers
    for rec in train:
        assert decode_image(rec["image"]).shape == (64, 64, 3)
        assert _text(rec["answer"]) in answers and _text(rec["question"]).endswith("?")
        assert _text(rec["question_type"]) in builder.info.metadata["question_types"]


def test_fashion_mnist(tmp_path):
    path = real_datasets.FASHION_MNIST_DIR
    if not os.path.exists(os.path.join(path, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")
    builder = builders.prepare(real_datasets.fashion_mnist_builder(str(tmp_path), limit=10))
    labels = real_datasets.read_idx(os.path.join(path, "t10k-labels-idx1-ubyte.gz"))
    images = real_datasets.read_idx(os.path.join(path, "t10k-images-idx3-ubyte.gz"))
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    for rec in builder.as_data_source("test"):
        i = int(rec["image_id"])
        np.testing.assert_array_equal(decode_image(rec["image"])[..., 0], images[i])
        assert rec["label"] == labels[i]
        assert real_datasets.FASHION_MNIST_CLASSES[labels[i]] in _text(rec["captions"][0])


def test_missing_real_datasets_say_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        real_datasets.fashion_mnist_builder(str(tmp_path), path=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="pip install easy-vqa"):
        builders.prepare(real_datasets.easy_vqa_builder(str(tmp_path), path=str(tmp_path / "nowhere")))


def _png(colour, size=8):
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_folder(root, lines_by_split, images=("a.png", "b.png", "c.png")):
    """A bring-your-own folder: images/<name> (solid colours) plus one JSONL file per split."""
    os.makedirs(root / "images", exist_ok=True)
    for i, name in enumerate(images):
        (root / "images" / name).write_bytes(_png(40 * i))
    for split, lines in lines_by_split.items():
        (root / f"{split}.jsonl").write_text(
            "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8"
        )


GOOD = [
    {"image": "images/a.png", "caption": "a black square"},
    {"image": "images/b.png", "captions": ["a grey square", "grey"]},
]
BAD = [
    '{"image": "images/a.png", "caption": ',  # line 3: malformed JSON
    {"image": "images/missing.png", "caption": "gone"},  # line 4
    {"image": "images/corrupt.png", "caption": "broken"},  # line 5
    {"image": "images/c.png", "caption": "   "},  # line 6: empty caption
    {"image": "images/c.png", "caption": "x" * 2000},  # line 7: overlong caption
]


def test_jsonl_image_text_reads_back_and_reuses_prepared_files(tmp_path):
    write_folder(tmp_path / "src", {"train": GOOD, "val": GOOD[:1]})
    builder = builders.prepare(jsonl.jsonl_builder(str(tmp_path / "src"), str(tmp_path / "prep")))
    train = builder.as_data_source("train")
    assert len(train) == 2 and len(builder.as_data_source("val")) == 1
    by_source = {_text(r["source"]).rsplit(":", 1)[1]: r for r in train}
    assert [_text(c) for c in by_source["2"]["captions"]] == ["a grey square", "grey"]
    np.testing.assert_array_equal(decode_image(by_source["1"]["image"]), np.zeros((8, 8, 3)))
    again = jsonl.jsonl_builder(str(tmp_path / "src"), str(tmp_path / "prep"))
    assert again.data_dir == builder.data_dir and again.is_prepared()
    (tmp_path / "src" / "images" / "b.png").write_bytes(_png(200, size=9))  # the source changed
    assert jsonl.jsonl_builder(str(tmp_path / "src"), str(tmp_path / "prep")).data_dir != builder.data_dir


def test_jsonl_vqa_answer_vocabulary(tmp_path):
    lines = [
        {"image": "images/a.png", "question": "what colour?", "answer": "black"},
        {"image": "images/b.png", "question": "what colour?", "answers": ["grey", "gray", "grey"]},
        {"image": "images/a.png", "question": "is it dark?", "answer": "yes"},
    ]
    write_folder(tmp_path / "src", {"train": lines, "test": lines[2:]})
    builder = builders.prepare(jsonl.jsonl_builder(str(tmp_path / "src"), str(tmp_path / "prep")))
    assert builder.info.metadata["answers"] == ["grey", "yes", "black", "gray"]
    recs = sorted(builder.as_data_source("train"), key=lambda r: _text(r["source"]))
    assert _text(recs[1]["answer"]) == "grey" and [_text(a) for a in recs[1]["answers"]] == [
        "grey",
        "gray",
        "grey",
    ]
    assert recs[0]["image_id"] == recs[2]["image_id"] != recs[1]["image_id"]


def test_jsonl_bad_lines_fail_naming_file_and_line(tmp_path):
    write_folder(tmp_path / "src", {"train": GOOD + BAD})
    (tmp_path / "src" / "images" / "corrupt.png").write_bytes(_png(9)[:30])
    with pytest.raises(BadRecordError, match=r"train\.jsonl:3: malformed JSON"):
        builders.prepare(jsonl.jsonl_builder(str(tmp_path / "src"), str(tmp_path / "prep")))


def test_jsonl_bad_lines_skipped_and_counted(tmp_path):
    write_folder(tmp_path / "src", {"train": GOOD + BAD})
    (tmp_path / "src" / "images" / "corrupt.png").write_bytes(_png(9)[:30])
    builder = jsonl.jsonl_builder(str(tmp_path / "src"), str(tmp_path / "prep"), bad_records="skip", max_chars=500)
    builders.prepare(builder)
    assert len(builder.as_data_source("train")) == 2
    counts = {
        "malformed JSON": 1,
        "missing image": 1,
        "corrupt image": 1,
        "empty text": 1,
        "overlong text": 1,
    }
    assert builder.info.metadata["bad_records"] == {"train": counts}
    # The counts are saved with the dataset, so a later run that only reads it still sees them.
    reread = builders.tfds.builder_from_directory(builder.data_dir)
    assert reread.info.metadata["bad_records"] == {"train": counts}


def test_splits_past_the_tfds_memory_buffer_prepare_without_tensorflow(tmp_path, monkeypatch):
    """TFDS spills a split bigger than its in-memory shuffle buffer to files through TensorFlow, which mmjax does
    not install; the full shapes VQA split (~1.1 GB) is past TFDS's 1 GB default. Shrinking the buffer below a
    tiny split shows prepare() still writes it."""
    from tensorflow_datasets.core import shuffle

    monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 1000)
    builder = builders.prepare(builders.shapes_builder(str(tmp_path), task="vqa", **TINY))
    assert len(builder.as_data_source(split="train")) > 0
    assert shuffle.MAX_MEM_BUFFER_SIZE == 1000  # restored afterwards
