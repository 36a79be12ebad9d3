"""Your own videos and sounds as JSONL folders: prepared once (decoded, resized, resampled), bad files counted or
failing naming `file:line`, labels as class ids or names. (Image folders: tests/data/test_builders.py.)"""

import json
import os

import numpy as np
import pytest
import soundfile
from PIL import Image

from mmjax.data import builders, jsonl, media
from mmjax.data.errors import BadRecordError

RED, BLUE = (200, 30, 30), (30, 30, 200)


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def write_lines(root, lines_by_split):
    for split, lines in lines_by_split.items():
        (root / f"{split}.jsonl").write_text(
            "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8"
        )


def solid_clip(path, colour, frames=10, height=24, width=32):
    media.write_video(path, np.full((frames, height, width, 3), colour, np.uint8))


def video_folder(root):
    """clips/red.mp4 (10 frames), clips/blue.mp4 (4), clips/ramp/ (5 frames 000-004, grey 0, 50, ..., 200)."""
    (root / "clips" / "ramp").mkdir(parents=True)
    solid_clip(root / "clips" / "red.mp4", RED)
    solid_clip(root / "clips" / "blue.mp4", BLUE, frames=4)
    for i in range(5):
        Image.fromarray(np.full((20, 30, 3), 50 * i, np.uint8)).save(root / "clips" / "ramp" / f"{i:03d}.png")


def by_line(source):
    return {int(_text(r["source"]).rsplit(":", 1)[1]): r for r in source}


def video_builder(root, prep, **settings):
    return jsonl.jsonl_builder(str(root), str(prep), **{"image_size": 16, "min_frames": 4, "max_frames": 8, **settings})


def test_video_clips_are_stored_resized_subsampled_and_labelled(tmp_path):
    video_folder(tmp_path / "src")
    write_lines(
        tmp_path / "src",
        {
            "train": [
                {"video": "clips/red.mp4", "caption": "a red screen", "label": "red"},
                {"video": "clips/ramp/", "label": "grey"},  # a class name and no caption: captioned by the name
                {"video": "clips/red.mp4", "captions": ["red again", "still red"], "label": "red"},
            ],
            "val": [{"video": "clips/blue.mp4", "caption": "a blue screen", "label": "blue"}],
        },
    )
    builder = builders.prepare(video_builder(tmp_path / "src", tmp_path / "prep", max_frames=4))
    assert builder.FIELDS == {"image": "video", "image_id": "video_id"}  # the pipeline's visual slot reads the clip
    assert builder.info.metadata["classes"] == ["blue", "grey", "red"]  # over all splits, sorted
    train = by_line(builder.as_data_source("train"))
    red, ramp = train[1], train[2]
    assert red["video"].shape == (4, 16, 16, 3) and red["video"].dtype == np.uint8  # 10 frames, 4 kept
    assert np.abs(red["video"].reshape(-1, 3).astype(int) - RED).max() < 12  # H.264 is lossy; the colour stays
    assert [_text(c) for c in red["captions"]] == ["a red screen"] and red["label"] == 2
    assert [_text(c) for c in ramp["captions"]] == ["grey"] and ramp["label"] == 1
    np.testing.assert_array_equal(ramp["video"][:, 0, 0, 0], [0, 50, 150, 200])  # frames in name order, spread
    assert red["video_id"] == train[3]["video_id"] != ramp["video_id"]  # one clip, one id
    assert len(red["boxes"]) == 0 and _text(red["source"]).endswith("train.jsonl:1")
    (blue,) = builder.as_data_source("val")
    assert blue["video"].shape == (4, 16, 16, 3) and blue["label"] == 0  # no longer than max_frames: all

    again = video_builder(tmp_path / "src", tmp_path / "prep", max_frames=4)
    assert again.data_dir == builder.data_dir and again.is_prepared()
    for changed in (dict(max_frames=5), dict(image_size=8), dict(min_frames=3)):  # settings that change the content
        assert (
            video_builder(tmp_path / "src", tmp_path / "prep", **{"max_frames": 4, **changed}).data_dir
            != again.data_dir
        )
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "src" / "clips" / "ramp" / "001.png")
    assert video_builder(tmp_path / "src", tmp_path / "prep", max_frames=4).data_dir != again.data_dir  # a frame


def bad_video_lines(root):
    video_folder(root)
    real = (root / "clips" / "red.mp4").read_bytes()
    (root / "clips" / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(2000))
    (root / "clips" / "cut.mp4").write_bytes(real[: len(real) // 2])  # the index at the end is gone
    solid_clip(root / "clips" / "short.mp4", RED, frames=3)
    return [
        {"video": "clips/red.mp4", "caption": "red"},
        {"video": "clips/noise.mp4", "caption": "noise"},  # line 2
        {"video": "clips/cut.mp4", "caption": "cut"},  # line 3
        {"video": "clips/short.mp4", "caption": "short"},  # line 4: 3 frames < min_frames 4
        {"image": "clips/ramp/000.png", "caption": "a still"},  # line 5: not the folder's medium
        {"video": "clips/gone.mp4", "caption": "gone"},  # line 6
        {"video": "clips/blue.mp4", "label": 1},  # line 7: a class id alone gives no text
        {"video": "clips/blue.mp4", "caption": "blue", "label": "blue"},  # line 8: ids and names mixed
        {"video": "clips/ramp", "caption": "ramp"},
    ]


def test_bad_video_lines_are_skipped_and_counted(tmp_path):
    write_lines(tmp_path / "src", {"train": bad_video_lines(tmp_path / "src")})
    builder = builders.prepare(video_builder(tmp_path / "src", tmp_path / "prep", bad_records="skip"))
    assert sorted(by_line(builder.as_data_source("train"))) == [1, 9]
    counts = {
        "corrupt video": 2,
        "too short": 1,
        "wrong media": 1,
        "missing video": 1,
        "missing field": 1,
        "mixed labels": 1,
    }
    assert builder.info.metadata["bad_records"] == {"train": counts}
    assert "classes" not in builder.info.metadata  # class ids name no classes


def test_a_corrupt_video_fails_naming_its_line_before_anything_is_written(tmp_path):
    write_lines(tmp_path / "src", {"train": bad_video_lines(tmp_path / "src")})
    builder = video_builder(tmp_path / "src", tmp_path / "prep")
    with pytest.raises(BadRecordError, match=r"train\.jsonl:2: corrupt video: .*noise\.mp4: not a readable video"):
        builders.prepare(builder)
    assert not builder.is_prepared() and not list((tmp_path / "prep").glob("**/*array_record*"))


def test_video_settings_that_cannot_work_fail_naming_the_key(tmp_path):
    video_folder(tmp_path / "src")
    write_lines(tmp_path / "src", {"train": [{"video": "clips/red.mp4", "caption": "red"}]})
    src = str(tmp_path / "src")
    with pytest.raises(ValueError, match=r"^data.num_frames: the lines of .* name videos"):
        jsonl.jsonl_builder(src, image_size=16)
    with pytest.raises(ValueError, match=r"^data.image_size: must be set"):
        jsonl.jsonl_builder(src, min_frames=4)
    with pytest.raises(ValueError, match=r"^data.num_frames \(80\) is more than data.max_frames \(64\)"):
        jsonl.jsonl_builder(src, image_size=16, min_frames=80)
    with pytest.raises(ValueError, match=r"^data.task: video lines have captions and labels"):
        jsonl.jsonl_builder(src, task="vqa", image_size=16, min_frames=4)
    write_lines(tmp_path / "src", {"train": [{"image": "clips/ramp/000.png", "caption": "a still"}]})
    with pytest.raises(
        ValueError, match=r"^data.num_frames: clips of 4 frames asked for, but the lines .* name images"
    ):
        jsonl.jsonl_builder(src, min_frames=4)


def test_audio_is_stored_mono_at_the_sample_rate(tmp_path):
    root = tmp_path / "src"
    (root / "sounds").mkdir(parents=True)
    t = np.arange(22_050) / 44_100  # 0.5 s
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(root / "sounds" / "tone.wav", np.stack([tone, tone], axis=1), 44_100)  # stereo, 44.1 kHz
    soundfile.write(root / "sounds" / "quiet.flac", np.zeros(8000), 16_000)
    soundfile.write(root / "sounds" / "blip.wav", np.zeros(160), 16_000)  # 10 ms
    soundfile.write(root / "sounds" / "empty.wav", np.zeros(0), 16_000)
    (root / "sounds" / "junk.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    lines = [
        {"audio": "sounds/tone.wav", "caption": "a tone", "label": 3},
        {"audio": "sounds/quiet.flac", "captions": ["silence", "nothing"], "label": 0},
        {"audio": "sounds/blip.wav", "caption": "a blip"},  # line 3: too short
        {"audio": "sounds/empty.wav", "caption": "nothing"},  # line 4
        {"audio": "sounds/junk.wav", "caption": "junk"},  # line 5
        {"video": "clips/x.mp4", "caption": "a clip"},  # line 6: not the folder's medium
        {"audio": "sounds/tone.wav", "label": True},  # line 7: not a class id
    ]
    write_lines(root, {"train": lines, "test": lines[1:2]})
    builder = builders.prepare(jsonl.jsonl_builder(str(root), str(tmp_path / "prep"), bad_records="skip"))
    assert builder.FIELDS == {"image_id": "audio_id"}  # no image: the pipeline reads `audio` by name
    meta = builder.info.metadata
    assert meta["sample_rate"] == 16_000 and "classes" not in meta
    counts = {"too short": 1, "empty audio": 1, "corrupt audio": 1, "wrong media": 1, "bad label": 1}
    assert meta["bad_records"] == {"train": counts, "test": {}}
    train = by_line(builder.as_data_source("train"))
    assert sorted(train) == [1, 2]
    audio = train[1]["audio"]
    assert audio.dtype == np.float32 and audio.shape == (8000,)  # 0.5 s at 16 kHz
    assert abs(np.argmax(np.abs(np.fft.rfft(audio))) * 16_000 / audio.size - 440) < 4  # the tone survives
    assert 0.45 < np.abs(audio).max() < 0.55 and train[1]["label"] == 3
    assert [_text(c) for c in train[2]["captions"]] == ["silence", "nothing"] and train[2]["audio_id"] == 1
    assert len(builder.as_data_source("test")) == 1

    with pytest.raises(BadRecordError, match=r"train\.jsonl:3: too short: .*blip\.wav: 0\.01 s of audio"):
        builders.prepare(jsonl.jsonl_builder(str(root), str(tmp_path / "prep2")))
    resampled = jsonl.jsonl_builder(str(root), str(tmp_path / "prep"), bad_records="skip", sample_rate=8000)
    assert resampled.data_dir != builder.data_dir
    assert by_line(builders.prepare(resampled).as_data_source("train"))[1]["audio"].shape == (4000,)


def test_class_names_label_image_lines_too(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    for name, colour in (("r.png", RED), ("b.png", BLUE)):
        Image.fromarray(np.full((8, 8, 3), colour, np.uint8)).save(root / name)
    write_lines(root, {"train": [{"image": "r.png", "label": "red"}, {"image": "b.png", "label": "blue"}]})
    builder = builders.prepare(jsonl.jsonl_builder(str(root), str(tmp_path / "prep")))
    assert builder.info.metadata["classes"] == ["blue", "red"]
    train = by_line(builder.as_data_source("train"))
    assert (train[1]["label"], [_text(c) for c in train[1]["captions"]]) == (1, ["red"])
    assert os.path.basename(builder.data_dir) == "1.0.0" and type(builder) is jsonl.Jsonl
