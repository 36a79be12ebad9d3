"""data.frame_order, the controls that show whether a video model uses time: shuffled frames (a permutation per
example, fixed for it) and a single frame repeated, in training and evaluation alike."""

import pathlib

import numpy as np
import pytest

from mmjax import config as mmconfig
from mmjax import data as mmdata
from mmjax.data import examples, pipeline, preprocess
from mmjax.data.tokenizers import tokenizer_from_config

REPO = pathlib.Path(__file__).resolve().parents[2]
T = 8


def _to_example(order: str, captions: str = "random") -> examples.ToExample:
    tok = tokenizer_from_config({"kind": "word", "path": "shapes", "max_length": 16, "lowercase": True})
    image = preprocess.ImagePreprocessor(size=4, random_crop=False)
    return examples.ToExample("image_text", image, tok, "s", captions=captions, num_frames=T, frame_order=order)


def _record() -> dict:
    # frame t is filled with 10 t: a frame's value says which one it is, through the resize
    clip = (10 * np.arange(T, dtype=np.uint8))[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    return {"index": 0, "image": clip, "captions": [b"a red circle", b"a blue square", b"a green cross"], "label": 1}


def _frame_ids(out: dict) -> list[int]:
    clip = out["image"]
    assert clip.shape == (T, 4, 4, 3) and (clip == clip[:, :1, :1, :1]).all()
    return [int(v) // 10 for v in clip[:, 0, 0, 0]]


def test_shuffle_permutes_the_frames_fixed_per_example_and_different_between_examples():
    keep, shuffle = _to_example("keep"), _to_example("shuffle")
    assert _frame_ids(keep.random_map(_record(), np.random.default_rng(0))) == list(range(T))
    orders = []
    for seed in range(6):  # the per-example rng grain hands each position
        out = shuffle.random_map(_record(), np.random.default_rng(seed))
        ids = _frame_ids(out)
        assert sorted(ids) == list(range(T)) and ids != list(range(T))
        assert _frame_ids(shuffle.random_map(_record(), np.random.default_rng(seed))) == ids  # deterministic
        # drawn after everything else: the caption (and crop) are the ones the kept order gets
        assert out[examples.TEXT_KEY] == keep.random_map(_record(), np.random.default_rng(seed))[examples.TEXT_KEY]
        orders.append(tuple(ids))
    assert len(set(orders)) == len(orders)


def test_single_repeats_the_central_frame():
    out = _to_example("single").random_map(_record(), np.random.default_rng(0))
    assert _frame_ids(out) == [T // 2] * T


@pytest.fixture(scope="module")
def clips_config(tmp_path_factory):
    config = mmdata.default_config(image_size=32, max_length=24)
    config.update(source="moving_shapes", num_frames=T, random_crop=False, batch_size=8)
    config.data_dir = str(tmp_path_factory.mktemp("clips"))
    config.moving_shapes.update(num_train=8, num_validation=2, num_test=8, num_compositional=2)
    config.tokenizer.update(kind="word", path="shapes")
    return config


def _batch(config, order: str, split: str, train: bool) -> dict:
    cfg = config.copy_and_resolve_references()
    cfg.frame_order = order
    return {k: np.asarray(v) for k, v in next(pipeline.build_pipeline(cfg, split, train=train)).items()}


@pytest.mark.parametrize("split,train", [("train", True), ("test", False)])
def test_the_pipeline_reorders_clips_in_training_and_evaluation(clips_config, split, train):
    kept = _batch(clips_config, "keep", split, train)
    shuffled = _batch(clips_config, "shuffle", split, train)
    np.testing.assert_array_equal(shuffled["image_id"], kept["image_id"])  # the same clips, in the same rows
    np.testing.assert_array_equal(_batch(clips_config, "shuffle", split, train)["image"], shuffled["image"])
    orders = set()
    for a, b in zip(kept["image"], shuffled["image"]):
        assert sorted(x.tobytes() for x in a) == sorted(x.tobytes() for x in b)  # the clip's frames, each once
        match = [[i for i in range(T) if np.array_equal(frame, a[i])] for frame in b]
        if all(len(m) == 1 for m in match):  # every frame distinct (not a clip that stays still): its order
            orders.add(tuple(m[0] for m in match))
    assert len(orders) >= 3  # examples are shuffled differently
    single = _batch(clips_config, "single", split, train)
    np.testing.assert_array_equal(single["image"], np.repeat(kept["image"][:, T // 2 : T // 2 + 1], T, axis=1))


def test_reordering_without_clips_is_a_one_line_error_naming_the_key(clips_config):
    with pytest.raises(mmconfig.ConfigError, match=r"'data.frame_order' is 'shuffle' but there are no clips"):
        mmconfig.load_config(f"{REPO}/configs/clip_shapes.py:tiny", ["data.frame_order=shuffle"])
    with pytest.raises(mmconfig.ConfigError, match=r"'data.frame_order' is 'reversed'; expected one of"):
        mmconfig.load_config(f"{REPO}/configs/video_shapes.py:tiny", ["data.frame_order=reversed"])
    assert mmconfig.load_config(f"{REPO}/configs/video_shapes.py:tiny", ["data.frame_order=single"])
    still = clips_config.copy_and_resolve_references()
    still.update(num_frames=None, frame_order="single")
    with pytest.raises(ValueError, match=r"^data.frame_order is 'single' but data.num_frames is unset"):
        pipeline.build_pipeline(still, "train")
