"""The pipeline: batch layout, exact restore, disjoint shards, global arrays, worker processes."""

import grain
import jax
import numpy as np
import pytest

from mmjax import data as mmdata
from mmjax.data import examples, pipeline, preprocess, shapes, sources
from mmjax.data.tokenizers import clip_tokenizer


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    cfg = mmdata.default_config()
    cfg.data_dir = str(tmp_path_factory.mktemp("data"))
    cfg.shapes.update(image_size=32, num_train=40, num_validation=13, num_test=4, num_compositional=4)
    cfg.image_size = 24
    cfg.tokenizer.max_length = 24
    cfg.batch_size = 8
    cfg.flip = True
    return cfg


def _take(it, n):
    return [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(n)]


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_image_text_batch_layout(config):
    batch = next(pipeline.build_pipeline(config, "train"))
    assert batch["image"].shape == (8, 24, 24, 3) and batch["image"].dtype == np.float32
    assert batch["input_ids"].shape == (8, 24) and batch["input_ids"].dtype == np.int32
    assert batch["attention_mask"].shape == (8, 24) and set(np.unique(batch["attention_mask"])) <= {0, 1}
    assert (batch["input_ids"][:, 0] == 49406).all() and (batch["example_mask"] == 1).all()
    # Images were normalized with CLIP's statistics: background pixels (~0.85-1.0) land near +1.4..+2.
    assert -2 < batch["image"].min() and batch["image"].max() < 2.2


def test_eval_pass_is_ordered_complete_and_padded(config):
    batches = _take(pipeline.build_pipeline(config, "validation"), 2)
    index = np.concatenate([b["index"] for b in batches])
    mask = np.concatenate([b["example_mask"] for b in batches])
    np.testing.assert_array_equal(index[mask == 1], np.arange(13))
    assert mask.sum() == 13 and (index[mask == 0] == 0).all()


def test_all_captions_mode_for_retrieval(config):
    cfg = config.copy_and_resolve_references()
    cfg.captions = "all"
    batch = next(pipeline.build_pipeline(cfg, "test"))
    assert batch["input_ids"].shape == (8, 5, 24) and (batch["caption_mask"][:4] == 1).all()
    for row, image_id in enumerate(batch["image_id"][:4]):
        captions = shapes.generate(0, "test", int(image_id), 32)["captions"]
        np.testing.assert_array_equal(batch["input_ids"][row], clip_tokenizer(max_length=24)(captions)["input_ids"])


def test_restore_mid_epoch_replays_exactly(config):
    it = pipeline.build_pipeline(config, "train")
    _take(it, 3)  # 24 of 40 records: mid-epoch
    state = it.get_state()
    expected = _take(it, 6)  # crosses into epochs 2 and 3, which reshuffle
    restored = pipeline.build_pipeline(config, "train")
    restored.set_state(state)
    _assert_same(_take(restored, 6), expected)
    # Epochs differ in order, and a different seed gives a different order.
    first_two_epochs = np.concatenate([b["index"] for b in _take(pipeline.build_pipeline(config, "train"), 10)])
    assert sorted(first_two_epochs[:40]) == list(range(40)) and sorted(first_two_epochs[40:]) == list(range(40))
    assert (first_two_epochs[:40] != first_two_epochs[40:]).any()


def test_state_goes_through_grain_checkpoint_handler(config, tmp_path):
    it = pipeline.build_pipeline(config, "train")
    _take(it, 2)
    grain.checkpoint.CheckpointHandler().save(tmp_path, item=it)
    expected = _take(it, 2)
    restored = grain.checkpoint.CheckpointHandler().restore(tmp_path, item=pipeline.build_pipeline(config, "train"))
    _assert_same(_take(restored, 2), expected)


@pytest.mark.parametrize("train", [False, True])
def test_two_shards_are_disjoint_and_cover_the_split(config, train):
    cfg = config.copy_and_resolve_references()
    cfg.batch_size = 4  # 2 per shard; 40 records = 10 batches per shard per epoch
    seen = []
    for shard in range(2):
        options = grain.sharding.ShardOptions(shard_index=shard, shard_count=2, drop_remainder=train)
        it = pipeline.build_pipeline(cfg, "train", train=train, shard_options=options)
        batches = _take(it, 10)
        assert all(len(b["index"]) == 2 for b in batches)
        seen.append({int(i) for b in batches for i, m in zip(b["index"], b["example_mask"]) if m})
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(40))


def test_global_arrays_on_a_mesh(config):
    devices = jax.devices()
    mesh = jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch = next(pipeline.build_pipeline(config, "train", mesh=mesh))
    for key, value in batch.items():
        assert isinstance(value, jax.Array) and value.shape[0] == 8, key
        assert value.sharding.spec == jax.sharding.PartitionSpec(("data",)), key
    assert len(batch["image"].addressable_shards) == len(devices)


def test_vqa_batches_with_regions(config):
    cfg = config.copy_and_resolve_references()
    cfg.task, cfg.max_regions, cfg.flip, cfg.random_crop = "vqa", 6, False, False
    batch = next(pipeline.build_pipeline(cfg, "train"))
    n = len(shapes.ANSWERS)
    assert batch["answer_scores"].shape == (8, n)
    np.testing.assert_array_equal(batch["answer_scores"].argmax(-1), batch["answer"])
    np.testing.assert_array_equal(batch["answer_scores"].sum(-1), np.ones(8))
    assert ((0 <= batch["question_type"]) & (batch["question_type"] < len(shapes.QUESTION_TYPES))).all()
    assert batch["boxes"].shape == (8, 6, 4) and (batch["box_mask"].sum(-1) >= 2).all()
    for row in range(8):
        want = shapes.generate(0, "train", int(batch["image_id"][row]), 32)
        k = len(want["labels"])
        np.testing.assert_allclose(batch["boxes"][row, :k], want["boxes"], atol=1e-6)
        np.testing.assert_array_equal(batch["box_labels"][row, :k], want["labels"])
        assert (batch["box_labels"][row, k:] == -1).all()


def test_train_question_types_keeps_exactly_those_records_for_training_only(config):
    cfg = config.copy_and_resolve_references()
    cfg.task, cfg.flip, cfg.random_crop, cfg.num_epochs = "vqa", False, False, 1
    cfg.train_question_types = ("left_of", "above")
    wanted = {shapes.QUESTION_TYPES.index(t) for t in cfg.train_question_types}
    expected = sum(
        kind in ("left_of", "above") for i in range(40) for *_, kind in shapes.generate(0, "train", i, 32)["qa"]
    )
    seen = [int(t) for batch in pipeline.build_pipeline(cfg, "train") for t in np.asarray(batch["question_type"])]
    assert set(seen) == wanted
    assert len(seen) == expected // cfg.batch_size * cfg.batch_size  # one epoch, the partial batch dropped
    evaluated = {int(t) for b in pipeline.build_pipeline(cfg, "test") for t in np.asarray(b["question_type"])}
    assert evaluated - wanted  # evaluation still sees every type
    cfg.train_question_types = ("left_of", "behind")
    with pytest.raises(ValueError, match=r"train_question_types \['behind'\] match no record .*types present: "):
        pipeline.build_pipeline(cfg, "train")


def test_worker_processes_yield_the_same_examples(config):
    cfg = config.copy_and_resolve_references()
    cfg.worker_count = 2
    with_workers = pipeline.build_pipeline(cfg, "validation")
    batches = _take(with_workers, 2)
    with_workers.close()
    # Workers each read a slice and interleave their batches, so compare examples by index, not order.
    reference = _take(pipeline.build_pipeline(config, "validation"), 2)
    by_index = {int(i): img for b in reference for i, img, m in zip(b["index"], b["image"], b["example_mask"]) if m}
    got = [(int(i), img) for b in batches for i, img, m in zip(b["index"], b["image"], b["example_mask"]) if m]
    assert sorted(i for i, _ in got) == list(range(13))
    for i, img in got:
        np.testing.assert_array_equal(img, by_index[i])


@pytest.mark.parametrize("captions", ["random", "all"])
def test_batch_level_work_equals_per_record_conversion(config, captions):
    """`finish_batch` (vectorized normalize, one tokenizer call) must give, bit for bit, what converting each
    record completely gives: the per-record image preprocessing and the per-text tokenizer."""
    source = sources.open_source(config, "train")
    image = preprocess.ImagePreprocessor(size=24, random_crop=True, flip=True)
    tokenizer = clip_tokenizer(max_length=24)
    to_example = examples.ToExample("image_text", image, tokenizer, "shapes/train", captions=captions, max_captions=3)
    records = [{**source.data[i], "index": i} for i in range(6)]
    rows = [to_example.random_map(r, np.random.default_rng(i)) for i, r in enumerate(records)]
    rows[4] = {k: np.zeros_like(v) for k, v in rows[4].items()}  # a placeholder row, as DropBadRecords makes
    mask = np.array([1, 1, 1, 1, 0, 1], np.int32)
    batch = {k: np.stack([row[k] for row in rows]) for k in rows[0]} | {"example_mask": mask}
    got = to_example.finish_batch(batch)
    for i, record in enumerate(records):
        if not mask[i]:
            for key in ("image", "input_ids", "attention_mask"):
                assert not got[key][i].any(), key
            continue
        rng = np.random.default_rng(i)  # the same draws in the same order: crop, flip, then the caption
        want_image = image(preprocess.decode_image(record["image"]), rng)
        texts = [c.decode() for c in record["captions"]]
        texts = [texts[int(rng.integers(len(texts)))]] if captions == "random" else texts[:3]
        want = tokenizer(texts)
        np.testing.assert_array_equal(got["image"][i], want_image)
        np.testing.assert_array_equal(got["input_ids"][i].reshape(-1, 24), want["input_ids"])
        np.testing.assert_array_equal(got["attention_mask"][i].reshape(-1, 24), want["attention_mask"])
    assert got["image"].dtype == np.float32 and got["input_ids"].dtype == np.int32


def test_read_chunk_size_changes_nothing(config, monkeypatch):
    """Records are read in chunks; batches and mid-chunk restores must not depend on the chunk size."""
    expected = _take(pipeline.build_pipeline(config, "train"), 7)
    monkeypatch.setattr(pipeline, "READ_CHUNK", 3)  # chunks straddle batches (8) and epochs (40 records)
    it = pipeline.build_pipeline(config, "train")
    _assert_same(_take(it, 2), expected[:2])
    state = it.get_state()
    _assert_same(_take(it, 5), expected[2:])
    restored = pipeline.build_pipeline(config, "train")
    restored.set_state(state)
    _assert_same(_take(restored, 5), expected[2:])
