"""The sounding_shapes clips: deterministic, a soundtrack that is the source's tone exactly while it moves and silence
otherwise, labels that say what the scene holds, a fused label neither modality alone determines, and batches that
hold the clip and its soundtrack together."""

import dataclasses

import numpy as np
import pytest

from mmjax.data import builders, examples, preprocess
from mmjax.data import sounding_shapes as ss
from mmjax.data.shapes import COLOURS, HELD_OUT, SIZES
from mmjax.data.tokenizers import clip_tokenizer


@pytest.fixture(scope="module")
def clips():
    return [ss.generate(0, "train", i) for i in range(600)]


def _moving_steps(boxes: np.ndarray) -> np.ndarray:
    """The frames t whose box differs from frame t + 1's."""
    return np.flatnonzero((boxes[1:] != boxes[:-1]).any(-1))


def _per_frame(audio: np.ndarray) -> np.ndarray:
    return audio.reshape(-1, ss.SAMPLES_PER_FRAME)


def test_same_seed_same_bytes_and_clips_differ():
    a, b = ss.generate(0, "train", 5), ss.generate(0, "train", 5)
    for key in ("video", "audio", "boxes", "sound_times"):
        assert a[key].tobytes() == b[key].tobytes()
    assert a["captions"] == b["captions"] and a["clip"] == b["clip"]
    assert not np.array_equal(a["audio"], ss.generate(0, "train", 6)["audio"])
    assert not np.array_equal(a["video"], ss.generate(1, "train", 5)["video"])
    assert a["video"].shape == (8, 32, 32, 3) and a["video"].dtype == np.uint8
    assert a["audio"].shape == (8 * ss.SAMPLE_RATE // ss.FPS,) == (16_000,) and a["audio"].dtype == np.float32
    longer = ss.generate(0, "train", 5, image_size=48, num_frames=12)
    assert longer["video"].shape == (12, 48, 48, 3) and longer["audio"].shape == (24_000,)


def test_silence_while_the_source_is_still_and_its_pitch_while_it_moves(clips):
    pitches = np.asarray(list(ss.PITCHES.values()))
    for c in clips[:100]:
        src = c["clip"].sounding
        frames = _per_frame(c["audio"])
        quiet = np.ones(len(frames), bool)
        quiet[src.start : src.stop] = False
        assert not frames[quiet].any()  # exactly zero: no object sounds there
        on = c["audio"][src.start * ss.SAMPLES_PER_FRAME : src.stop * ss.SAMPLES_PER_FRAME]
        assert np.sqrt(np.mean(on**2)) > 0.9 * ss.LEVEL[0] and np.abs(c["audio"]).max() < 0.6
        spectrum = np.abs(np.fft.rfft(on * np.hanning(on.size)))  # a window: partials between bins lose little
        peak = np.fft.rfftfreq(on.size, 1 / ss.SAMPLE_RATE)[spectrum.argmax()]
        assert abs(peak - ss.PITCHES[src.mover.colour]) < 4.0  # the strongest partial is the colour's pitch
        assert list(ss.PITCHES)[int(np.abs(pitches - peak).argmin())] == src.mover.colour  # the nearest colour


def test_each_shape_has_its_own_timbre_and_no_partial_aliases():
    spectra = {}
    for shape in ss.HARMONICS:
        wave = ss.tone("red", shape, ss.SAMPLE_RATE, 0.1, np.zeros(5))
        spectrum = np.abs(np.fft.rfft(wave))  # 1 Hz bins
        spectra[shape] = np.round(spectrum[[round(ss.PITCHES["red"] * n) for n in range(1, 6)]] / spectrum.max(), 2)
    assert len({tuple(s) for s in spectra.values()}) == len(ss.HARMONICS)
    assert max(ss.PITCHES.values()) * max(len(h) for h in ss.HARMONICS.values()) < ss.SAMPLE_RATE / 2


def test_sound_times_are_the_frames_where_the_source_moves(clips):
    for c in clips[:200]:
        clip, times = c["clip"], c["sound_times"]
        for i, obj in enumerate(clip.objects):
            steps = _moving_steps(c["boxes"][:, i])
            assert len(steps) and steps.min() >= obj.start and steps.max() <= obj.stop - 1  # still out of its window
            if obj.mover.motion not in ("grows", "shrinks"):  # a side changing by < 1 px a frame may pause a frame
                assert steps.min() == obj.start and steps.max() == obj.stop - 1
            assert obj.stop - obj.start >= clip.num_frames // 2
        src = clip.sounding
        np.testing.assert_allclose(times[c["sounding"]], (src.start / ss.FPS, src.stop / ss.FPS))
        assert not times[1 - c["sounding"]].any()  # the other one is silent
        loud = np.flatnonzero(_per_frame(c["audio"]).any(-1))
        np.testing.assert_array_equal(loud, np.arange(src.start, src.stop))


def test_labels_say_what_the_scene_holds(clips):
    seen = set()
    for c in clips[:200]:
        clip, boxes = c["clip"], c["boxes"]
        assert {o.mover.motion for o in clip.objects} == {c["motion"]} and ss.MOTIONS[c["label"]] == c["motion"]
        first, last = boxes[0], boxes[-1]
        centre = (first[:, :2] + first[:, 2:]) / 2, (last[:, :2] + last[:, 2:]) / 2
        (dx, dy), side = (centre[1] - centre[0]).T, (first[:, 2] - first[:, 0], last[:, 2] - last[:, 0])
        moved = {"left": dx < -0.3, "right": dx > 0.3, "up": dy < -0.3, "down": dy > 0.3,
                 "grows": side[1] > 1.4 * side[0], "shrinks": side[1] < side[0] / 1.4,
                 "bounces": (np.abs(dx) < 0.05) & (np.abs(dy) < 0.05)}[c["motion"]]  # fmt: skip
        assert moved.all(), c["captions"][0]
        src, other = c["sounding"], 1 - c["sounding"]
        assert SIZES[c["fused_label"]] == clip.sounding.mover.size != clip.objects[other].mover.size
        assert (side[0][src] > side[0][other]) == (SIZES[c["fused_label"]] == "large")
        assert clip.objects[0].mover.colour != clip.objects[1].mover.colour
        for i, obj in enumerate(clip.objects):  # each object is drawn where its box says, in its colour
            x0, y0, x1, y1 = np.round(first[i] * clip.image_size).astype(int)
            pixel = c["video"][0, (y0 + y1) // 2, (x0 + x1) // 2].astype(int)
            assert np.abs(pixel - COLOURS[obj.mover.colour]).max() < 40
        assert all(clip.sounding.mover.colour in t or clip.sounding.mover.size in t for t in c["captions"])
        seen.add((c["label"], c["sounding"], c["fused_label"]))
    assert len(seen) == len(ss.MOTIONS) * 2 * 2


def _swap_the_sound(clip: ss.Clip) -> ss.Clip:
    """The same sound from the other object: the two objects trade colour, shape and motion window (keeping their
    places and sizes), and the other one sounds."""
    a, b = clip.objects

    def look(obj, of):
        mover = dataclasses.replace(obj.mover, colour=of.mover.colour, shape=of.mover.shape, start=of.start)
        return ss.SoundingObject(mover, of.stop)

    return dataclasses.replace(clip, objects=(look(a, b), look(b, a)), source=1 - clip.source)


def _fused(clip: ss.Clip) -> int:
    return SIZES.index(clip.sounding.mover.size)


def test_the_fused_label_is_no_function_of_one_modality_alone(clips):
    for c in clips[:30]:
        clip = c["clip"]
        # the same frames, the other object sounding: the video is the same bytes, the fused label is not
        heard_elsewhere = dataclasses.replace(clip, source=1 - clip.source)
        assert ss.render_clip(heard_elsewhere).tobytes() == c["video"].tobytes()
        assert _fused(heard_elsewhere) != c["fused_label"]
        # the same sound, from the other object: the audio is the same bytes, the fused label is not
        swapped = _swap_the_sound(clip)
        assert ss.soundtrack(swapped).tobytes() == c["audio"].tobytes()
        assert _fused(swapped) != c["fused_label"]
    # and on the generated scenes, no visible rule for picking the source and no audible attribute beats chance
    fused = np.asarray([c["fused_label"] for c in clips])
    assert 0.42 < fused.mean() < 0.58
    first_box = np.asarray([c["boxes"][0] for c in clips])  # [N, 2, 4]
    starts = np.asarray([[o.start for o in c["clip"].objects] for c in clips])
    lengths = np.asarray([[o.stop - o.start for o in c["clip"].objects] for c in clips])
    rules = {
        "object 0": np.zeros(len(clips), int),
        "the leftmost": first_box[:, :, 0].argmin(1),
        "the topmost": first_box[:, :, 1].argmin(1),
        "the first to move": starts.argmin(1),
        "the longest mover": lengths.argmax(1),
    }
    sounding = np.asarray([c["sounding"] for c in clips])
    for name, pick in rules.items():
        assert 0.42 < (pick == sounding).mean() < 0.58, name
    for attribute in ("colour", "shape"):  # the best guess of the size from what the pitch or timbre says
        heard = np.asarray([getattr(c["clip"].sounding.mover, attribute) for c in clips])
        best = sum(max((fused[heard == v] == k).sum() for k in (0, 1)) for v in set(heard))
        assert best / len(clips) < 0.6, attribute


def test_held_out_pairs_appear_only_in_the_compositional_split():
    for split in ("train", "validation", "test"):
        for i in range(100):
            clip = ss.generate(0, split, i)["clip"]
            assert all((o.mover.colour, o.mover.shape) not in HELD_OUT for o in clip.objects)
    for i in range(30):
        clip = ss.generate(0, "compositional", i)["clip"]
        assert all((o.mover.colour, o.mover.shape) in HELD_OUT for o in clip.objects)
    with pytest.raises(ValueError, match="at least 4 frames"):
        ss.generate(0, "train", 0, num_frames=3)


def _to_example(**kw) -> examples.ToExample:
    return examples.ToExample("image_text", preprocess.ImagePreprocessor(size=32), clip_tokenizer(max_length=8), "s",
                              fields={"image": "video"}, num_frames=4, audio_samples=20_000, **kw)  # fmt: skip


def test_an_example_holds_the_clip_and_its_whole_soundtrack():
    c = ss.generate(0, "train", 3)
    record = {"index": 0, "video": c["video"], "audio": c["audio"], "captions": c["captions"], "label": c["label"]}
    out = _to_example(audio_random_window=True).random_map(record, np.random.default_rng(0))
    assert out["image"].shape == (4, 32, 32, 3) and out["audio"].shape == (20_000,)
    assert int(out["audio_length"]) == 16_000 and np.array_equal(out["audio"][:16_000], c["audio"])
    cut = dataclasses.replace(_to_example(audio_random_window=True), audio_samples=8000)
    for seed in range(5):  # training keeps the start too: a random window would leave the frames behind
        np.testing.assert_array_equal(cut.random_map(record, np.random.default_rng(seed))["audio"], c["audio"][:8000])
    blank = _to_example().placeholder()
    assert {k: (np.shape(v), np.asarray(v).dtype) for k, v in blank.items()} == {
        k: (np.shape(v), np.asarray(v).dtype) for k, v in out.items()
    }


def test_the_builder_stores_the_clips_and_the_pipeline_batches_clip_and_sound(tmp_path):
    from mmjax import data as mmdata

    settings = {"num_train": 6, "num_validation": 2, "num_test": 3, "num_compositional": 2}
    builder = builders.prepare(builders.sounding_shapes_builder(str(tmp_path), **settings))
    meta = builder.info.metadata
    assert meta["classes"] == list(ss.MOTIONS) and meta["fused_classes"] == ["small", "large"]
    assert meta["sample_rate"] == 16_000 and meta["fps"] == ss.FPS
    source = builder.as_data_source("train")
    for r in (source[i] for i in range(len(source))):
        want = ss.generate(0, "train", int(r["video_id"]))
        for key in ("video", "audio", "boxes", "sound_times"):
            np.testing.assert_array_equal(r[key], want[key])
        assert [int(r[k]) for k in ("label", "sounding", "fused_label")] == [
            want[k] for k in ("label", "sounding", "fused_label")
        ]
        assert [t.decode() for t in r["captions"]] == want["captions"]

    config = mmdata.default_config(image_size=32, max_length=24)
    config.update(source="sounding_shapes", data_dir=str(tmp_path), num_frames=4, audio_samples=16_000, batch_size=4)
    config.sounding_shapes.update(settings)
    config.tokenizer.update(kind="word", path="shapes")
    assert mmdata.available_splits(config) == ss.SPLITS
    batch = next(mmdata.build_pipeline(config, "train"))
    assert batch["image"].shape == (4, 4, 32, 32, 3) and batch["audio"].shape == (4, 16_000)
    assert batch["audio_length"].tolist() == [16_000] * 4 and batch["label"].shape == (4,)
    test = {k: np.asarray(v) for k, v in next(mmdata.build_pipeline(config, "test", train=False)).items()}
    assert test["example_mask"].tolist() == [1, 1, 1, 0]
    assert not test["image"][3].any() and not test["audio"][3].any()
    for row in range(3):
        want = ss.generate(0, "test", int(test["image_id"][row]))
        np.testing.assert_array_equal(test["audio"][row], want["audio"])
        assert int(test["label"][row]) == want["label"]
    # data.label_field: the fused label as `label`, with its own class names; a field the records lack fails
    config.label_field = "fused_label"
    fused = {k: np.asarray(v) for k, v in next(mmdata.build_pipeline(config, "test", train=False)).items()}
    want = [ss.generate(0, "test", int(i))["fused_label"] for i in fused["image_id"][:3]]
    assert fused["label"][:3].tolist() == want and fused["label"][3] == -1
    assert mmdata.dataset_info(config).classes == ("small", "large")
    config.label_field = "size"
    with pytest.raises(ValueError, match="data.label_field: the records of mmjax_sounding_shapes/train have no field"):
        mmdata.build_pipeline(config, "train")
    # data.sounding_boxes: both objects' boxes in each sampled frame, the sounding one first
    config.update(label_field="label", sounding_boxes=True, random_crop=False)
    boxed = {k: np.asarray(v) for k, v in next(mmdata.build_pipeline(config, "test", train=False)).items()}
    assert boxed["sounding_boxes"].shape == (4, 4, 2, 4)
    for row in range(3):
        want = ss.generate(0, "test", int(boxed["image_id"][row]))
        frames = np.linspace(0, 7, 4).round().astype(int)  # 4 of the 8 frames, spread uniformly
        s = want["sounding"]
        np.testing.assert_array_equal(boxed["sounding_boxes"][row], want["boxes"][frames][:, [s, 1 - s]])
    config.random_crop = True
    with pytest.raises(ValueError, match="data.sounding_boxes: boxes are not cropped"):
        mmdata.build_pipeline(config, "train")
    config.sounding_boxes = False
    config.audio_samples = 0
    with pytest.raises(ValueError, match="data.audio_samples: the records of mmjax_sounding_shapes/train hold audio"):
        mmdata.build_pipeline(config, "train")


def test_single_fraction_makes_that_share_of_train_clips_the_sounding_shape_alone_and_changes_nothing_else():
    """The curriculum's clips: the sounding shape alone (so the frames give the fused label), everything it shows and
    sounds as in the two-shape clip of the same index; held-out splits keep both shapes (each modality stays 1/2)."""
    singles = 0
    for i in range(200):
        two, curriculum = ss.generate(0, "train", i), ss.generate(0, "train", i, single_fraction=0.5)
        np.testing.assert_array_equal(curriculum["audio"], two["audio"])
        assert curriculum["fused_label"] == two["fused_label"] and curriculum["label"] == two["label"]
        if len(curriculum["clip"].objects) == 2:
            assert curriculum["clip"] == two["clip"] and curriculum["captions"] == two["captions"]
            continue
        singles += 1
        assert curriculum["clip"].objects == (two["clip"].sounding,) and curriculum["sounding"] == 0
        np.testing.assert_array_equal(curriculum["boxes"][:, 0], two["boxes"][:, two["sounding"]])
        assert not curriculum["boxes"][:, 1].any() and not curriculum["sound_times"][1].any()
        silent = two["clip"].objects[1 - two["sounding"]]
        x0, y0, x1, y1 = silent.box(0, 32)  # where the silent shape stood is background now
        patch = curriculum["video"][0, y0:y1, x0:x1]
        assert (patch == np.asarray(two["clip"].background, np.uint8)).all()
    assert 70 <= singles <= 130  # 100 expected
    assert all(
        len(ss.generate(0, s, i, single_fraction=1.0)["clip"].objects) == 2 for s in ss.SPLITS[1:] for i in range(5)
    )
    assert sum(len(ss.generate(0, "train", i, single_fraction=1.0)["clip"].objects) for i in range(5)) == 5
    with pytest.raises(ValueError, match=r"single_fraction must be in \[0, 1\], got 1.5"):
        ss.generate(0, "train", 0, single_fraction=1.5)
    # the builder names the dataset by it, so a curriculum never reuses (or overwrites) the two-shape data
    assert builders.sounding_shapes_builder("/tmp/x", single_fraction=0.5).builder_config.name.endswith("-single0.5")
    assert "single" not in builders.sounding_shapes_builder("/tmp/x").builder_config.name
