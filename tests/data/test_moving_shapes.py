"""The moving_shapes clips: deterministic, labelled by what the pixels do, order-dependent where the labels say so,
with a compositional split, and prepared by their TFDS builder byte for byte."""

import pathlib

import numpy as np
import pytest

from mmjax.data import builders
from mmjax.data import moving_shapes as ms


def _foreground(frame: np.ndarray, background) -> np.ndarray:
    return np.abs(frame.astype(int) - np.asarray(background)).sum(-1) > 30


def _track(video: np.ndarray, background) -> tuple[np.ndarray, np.ndarray]:
    """The foreground's centre (x, y) and area in each frame: what a model can see of a lone object's motion."""
    centres, areas = [], []
    for frame in video:
        ys, xs = np.nonzero(_foreground(frame, background))
        centres.append((xs.mean(), ys.mean()))
        areas.append(len(xs))
    return np.asarray(centres), np.asarray(areas, float)


def _motion_seen(video: np.ndarray, background) -> str:
    centres, areas = _track(video, background)
    (dx, dy), mid = centres[-1] - centres[0], centres[len(centres) // 2] - centres[0]
    growth = areas[-1] / areas[0]
    if growth > 1.5:
        return "grows"
    if growth < 1 / 1.5:
        return "shrinks"
    if abs(dx) > 4:
        return "right" if dx > 0 else "left"
    if abs(dy) > 4:
        return "down" if dy > 0 else "up"
    return "bounces" if mid[1] > 4 else "stays"


def _lone_clips(split="train", n=120, **kw):
    clips = [ms.generate(0, split, i, **kw) for i in range(n)]
    return [c for c in clips if len(c["clip"].movers) == 1]


def test_same_seed_same_clip_and_clips_differ():
    a, b = ms.generate(0, "train", 5), ms.generate(0, "train", 5)
    np.testing.assert_array_equal(a["video"], b["video"])
    assert a["captions"] == b["captions"]
    assert not np.array_equal(a["video"], ms.generate(0, "train", 6)["video"])
    assert not np.array_equal(a["video"], ms.generate(1, "train", 5)["video"])
    assert a["video"].shape == (8, 32, 32, 3) and a["video"].dtype == np.uint8


@pytest.mark.parametrize("size,frames", [(32, 8), (48, 16)])
def test_the_label_is_what_the_pixels_do(size, frames):
    clips = _lone_clips(image_size=size, num_frames=frames)
    assert {c["motion"] for c in clips} == set(ms.MOTIONS)
    for c in clips:
        assert _motion_seen(c["video"], c["clip"].background) == c["motion"], c["captions"][0]
        assert ms.MOTIONS[c["label"]] == c["motion"]


def test_played_backwards_the_order_dependent_motions_swap():
    for c in _lone_clips():
        backwards = _motion_seen(c["video"][::-1], c["clip"].background)
        assert backwards == ms.REVERSED.get(c["motion"], c["motion"])


def test_the_second_object_appears_half_way_and_the_captions_say_then():
    clips = [ms.generate(0, "train", i) for i in range(60)]
    two = [c for c in clips if len(c["clip"].movers) == 2]
    assert 15 < len(two) < 45
    for c in two:
        visible = c["boxes"][:, 1].any(-1)
        assert not visible[:4].any() and visible[4:].all()
        assert all(", then" in t or "and then" in t for t in c["captions"])
    for c in clips:
        assert all(ms.PHRASES[c["motion"]] in t.split("then")[0] for t in c["captions"])


def test_held_out_motion_shape_pairs_appear_only_in_the_compositional_split():
    for split in ("train", "validation", "test"):
        for i in range(150):
            clip = ms.generate(0, split, i)["clip"]
            assert all((m.motion, m.shape) not in ms.HELD_OUT for m in clip.movers)
    assert all((c.motion, c.shape) in ms.HELD_OUT for c in (ms.generate(0, "compositional", i)["clip"].movers[0]
                                                            for i in range(50)))  # fmt: skip


def test_too_few_frames_to_show_a_motion_is_an_error():
    with pytest.raises(ValueError, match="at least 4 frames"):
        ms.generate(0, "train", 0, num_frames=3)


def test_the_builder_stores_the_generated_clips(tmp_path):
    builder = builders.prepare(builders.moving_shapes_builder(str(tmp_path), num_train=6, num_validation=2,
                                                              num_test=2, num_compositional=2))  # fmt: skip
    assert builder.info.metadata["classes"] == list(ms.MOTIONS)
    source = builder.as_data_source("train")
    records = sorted((source[i] for i in range(len(source))), key=lambda r: r["video_id"])
    assert len(records) == 6
    for r in records:
        clip = ms.generate(0, "train", int(r["video_id"]))
        np.testing.assert_array_equal(r["video"], clip["video"])
        assert int(r["label"]) == clip["label"]
        assert [t.decode() for t in r["captions"]] == clip["captions"]
        np.testing.assert_array_equal(r["boxes"], clip["boxes"])


def test_the_pipeline_feeds_clips_in_the_visual_slot(tmp_path):
    """data.num_frames: batches of normalized clips [B, T, S, S, 3] with the captions' tokens; evaluation's padded
    rows are zero clips."""
    from mmjax.data import build_pipeline, default_config

    config = default_config(image_size=32, max_length=24)
    config.update(source="moving_shapes", data_dir=str(tmp_path), num_frames=4, random_crop=False, batch_size=6)
    config.moving_shapes.update(num_train=8, num_validation=2, num_test=4, num_compositional=2)
    config.tokenizer.update(kind="word", path="shapes")
    batch = next(build_pipeline(config, "train"))
    assert batch["image"].shape == (6, 4, 32, 32, 3) and batch["image"].dtype == np.float32
    assert batch["input_ids"].shape == (6, 24) and (batch["attention_mask"].sum(1) > 3).all()
    test = next(build_pipeline(config, "test", train=False))  # 4 clips in a batch of 6: two placeholder rows
    assert test["example_mask"].tolist() == [1, 1, 1, 1, 0, 0]
    assert not np.asarray(test["image"][4:]).any()
    clip = ms.generate(0, "test", int(test["image_id"][0]), image_size=32, num_frames=8)["video"][[0, 2, 5, 7]]
    np.testing.assert_allclose(test["image"][0], (clip / 255 - np.asarray(config.mean)) / np.asarray(config.std),
                               atol=1e-5)  # fmt: skip


def test_clip_lengths_that_cannot_work_fail_before_anything_runs(tmp_path):
    from mmjax import config as mmconfig

    spec = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "video_shapes.py:tiny")
    with pytest.raises(mmconfig.ConfigError, match=r"'model.image.num_frames' \(12\) is longer than the generated"):
        mmconfig.load_config(spec, ["model.image.num_frames=12"])
    still = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "clip_shapes.py:tiny")
    with pytest.raises(mmconfig.ConfigError, match=r"'data.num_frames' is 4 but model.image \('vit'\) takes still"):
        mmconfig.load_config(still, ["data.num_frames=4"])
    # a tower that takes any length (num_frames=None) is fed the clips the data states, and needs it stated
    cnn = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "video_shapes.py:tiny,tower=video_resnet")
    with pytest.raises(mmconfig.ConfigError, match=r"'data.num_frames' must be set: model.image \('video_resnet'\)"):
        mmconfig.load_config(cnn, ["model.image.num_frames=None"])
    config = mmconfig.load_config(cnn, ["model.image.num_frames=None", "data.num_frames=4"])
    assert config.model.image.num_frames == config.data.num_frames == 4


def test_captions_place_each_object_where_it_starts_so_a_caption_names_one_clip():
    """Retrieval needs captions that tell clips apart: each object is placed by its first box on the 3 x 3 grid."""
    from mmjax.data.shapes import grid_position

    clips = [ms.generate(0, "test", i) for i in range(300)]
    for c in clips:
        for k, mover in enumerate(c["clip"].movers):
            first = c["boxes"][mover.start, k] * 32  # (x0, y0, x1, y1) in pixels
            where = grid_position(((first[0] + first[2]) / 2, (first[1] + first[3]) / 2), 32)
            assert all(f"at the {where}" in t.split("then")[k] for t in c["captions"]), (where, c["captions"])
    owners = {}
    for i, c in enumerate(clips):
        for t in set(c["captions"]):
            owners.setdefault(t, set()).add(i)
    own = [any(len(owners[t]) == 1 for t in c["captions"]) for c in clips]
    assert np.mean(own) > 0.9  # without the places, about 0.6 of the clips had a caption of their own
