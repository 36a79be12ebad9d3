"""The pipeline: batch layout, exact restore, the same global batches under any process or worker count, global
arrays."""

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


def _random_config(config):
    """Every random choice on: shuffle, crops, flips, one caption drawn per image."""
    cfg = config.copy_and_resolve_references()
    cfg.update(shuffle=True, random_crop=True, flip=True, captions="random")
    return cfg


def _processes(cfg, split, n, *, train=True):
    """n simulated processes (no mesh): process i reads rows [i*B/n, (i+1)*B/n) of each global batch."""
    return [
        pipeline.build_pipeline(cfg, split, train=train, shard_options=grain.sharding.ShardOptions(i, n))
        for i in range(n)
    ]


def _global(iterators, steps):
    """The processes' local batches of each step, concatenated in process order: the global batches."""
    local = [_take(it, steps) for it in iterators]
    return [{k: np.concatenate([p[s][k] for p in local]) for k in local[0][s]} for s in range(steps)]


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
    np.testing.assert_array_equal(mask, np.arange(16) < 13)  # the padding is the tail of the last batch
    assert (index[mask == 0] == -1).all() and not batches[1]["image"][5:].any()


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


def test_global_batches_do_not_depend_on_the_process_count(config):
    """Shuffle, crops, flips and caption draws are decided per global position: n processes, each reading its
    block of every global batch, together yield exactly the batches of one process, across epochs (40 records,
    batch 8: five batches an epoch, each epoch shuffled anew)."""
    cfg = _random_config(config)
    expected = _take(pipeline.build_pipeline(cfg, "train"), 12)
    for n in (2, 4):
        _assert_same(_global(_processes(cfg, "train", n), 12), expected)
    # The draws are really random: other seed, other batches (order, crops, captions).
    cfg.seed = 1
    other = _take(pipeline.build_pipeline(cfg, "train"), 1)[0]
    assert (other["index"] != expected[0]["index"]).any()


@pytest.mark.parametrize("n", [4, 8])
def test_eval_batches_do_not_depend_on_the_process_count(config, n):
    """13 records, batch 8: with 8 processes, several read only padding in the last batch."""
    expected = _take(pipeline.build_pipeline(config, "validation"), 2)
    _assert_same(_global(_processes(config, "validation", n, train=False), 2), expected)
    for it in _processes(config, "validation", n, train=False):
        assert len(list(it)) == 2  # every process yields the same number of batches, then stops


def test_state_moves_between_process_counts(config):
    """A state saved by any process of a 2-process run resumes 1 process (and 1 -> 4) exactly where the
    uninterrupted run is: the state is the global position, the same in every process."""
    cfg = _random_config(config)
    expected = _take(pipeline.build_pipeline(cfg, "train"), 9)
    two = _processes(cfg, "train", 2)
    for it in two:
        _take(it, 3)
    states = [it.get_state() for it in two]
    assert states[0] == states[1] == {"batches": 3, "num_skipped": 0}
    one = pipeline.build_pipeline(cfg, "train")
    one.set_state(states[1])
    _assert_same(_take(one, 3), expected[3:6])
    four = _processes(cfg, "train", 4)
    for it in four:
        it.set_state(one.get_state())
    _assert_same(_global(four, 3), expected[6:9])


def test_global_arrays_on_a_mesh(config):
    devices = jax.devices()
    mesh = jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch = next(pipeline.build_pipeline(config, "train", mesh=mesh))
    for key, value in batch.items():
        assert isinstance(value, jax.Array) and value.shape[0] == 8, key
        assert value.sharding.spec == jax.sharding.PartitionSpec(("data",)), key
    assert len(batch["image"].addressable_shards) == len(devices)
    # Whatever the mesh's device order, the rows are the batch without a mesh.
    reverse = jax.sharding.Mesh(np.array(devices[::-1]).reshape(2, 4), ("data", "fsdp"))
    expected = _take(pipeline.build_pipeline(config, "train"), 1)
    _assert_same(_take(pipeline.build_pipeline(config, "train", mesh=reverse), 1), expected)
    np.testing.assert_array_equal(pipeline.local_rows(8, sharding=pipeline.batch_sharding(reverse)), np.arange(8))
    with pytest.raises(ValueError, match="data.batch_size=6 must divide over the mesh's batch shards"):
        pipeline.local_rows(6, sharding=pipeline.batch_sharding(reverse))
    with pytest.raises(ValueError, match="a mesh or shard_options, not both"):
        pipeline.build_pipeline(config, "train", mesh=mesh, shard_options=grain.sharding.ShardOptions(0, 2))


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


def test_worker_processes_yield_the_same_batches(config):
    """Workers each make whole local batches (every 2nd), read back in order: the same batches, in the same
    order, as no workers; and the state moves between worker counts."""
    cfg = _random_config(config)
    expected = _take(pipeline.build_pipeline(cfg, "train"), 6)
    cfg.worker_count = 2
    with_workers = pipeline.build_pipeline(cfg, "train")
    try:
        _assert_same(_take(with_workers, 3), expected[:3])
        state = with_workers.get_state()
    finally:
        with_workers.close()
    cfg.worker_count = 0
    restored = pipeline.build_pipeline(cfg, "train")
    restored.set_state(state)
    _assert_same(_take(restored, 3), expected[3:])


def test_placeholder_rows_are_shaped_like_examples(config):
    """Padding and masked rows batch with real ones: same keys, shapes and dtypes for every layout."""
    source = sources.open_source(config, "train")
    tokenizer = clip_tokenizer(max_length=24)
    image = preprocess.ImagePreprocessor(size=24)
    record = {**source.data[0], "index": 0}
    for captions, regions in (("random", 0), ("all", 3), ("first", 2)):
        to_example = examples.ToExample("image_text", image, tokenizer, "s", captions=captions, max_regions=regions)
        real, placeholder = to_example.random_map(record, np.random.default_rng(0)), to_example.placeholder()
        assert real.keys() == placeholder.keys()
        for k in real:
            assert (real[k].shape, real[k].dtype) == (placeholder[k].shape, placeholder[k].dtype), k
    vqa_config = config.copy_and_resolve_references()
    vqa_config.task = "vqa"
    vqa_source = sources.open_source(vqa_config, "train")
    to_example = examples.ToExample("vqa", image, tokenizer, "s", answers=vqa_source.answers)
    real = to_example.random_map({**vqa_source.data[0], "index": 0}, np.random.default_rng(0))
    placeholder = to_example.placeholder()
    assert real.keys() == placeholder.keys()
    for k in real:
        assert (real[k].shape, real[k].dtype) == (placeholder[k].shape, placeholder[k].dtype), k


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
    rows[4] = to_example.placeholder()  # a placeholder row, as padding and masked bad records are
    mask = np.array([1, 1, 1, 1, 0, 1], np.int32)
    got = examples.FinishBatch(to_example).map([row | {"example_mask": m} for row, m in zip(rows, mask)])
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
