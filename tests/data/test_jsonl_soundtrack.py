"""Your own clips with sound: a JSONL video folder read with `data.audio_samples` stores each file's soundtrack over
the time its frames show, and a clip without one (or with one that stops early) is a bad record."""

import numpy as np
import pytest

from mmjax import data as mmdata
from mmjax.data import builders, jsonl, media
from mmjax.data.errors import BadRecordError

RATE, FPS = 16_000, 8


def tone_clip(path, frames: int, *, sound_from: float, seconds: float | None = None):
    """A clip of `frames` frames at FPS whose soundtrack is silent, then a 440 Hz tone from `sound_from` s, and lasts
    `seconds` (default: as long as the video; None means no audio track when seconds == 0)."""
    seconds = frames / FPS if seconds is None else seconds
    t = np.arange(int(seconds * RATE)) / RATE
    wave = (0.5 * np.sin(2 * np.pi * 440 * t) * (t >= sound_from)).astype(np.float32)
    frames_ = np.zeros((frames, 24, 32, 3), np.uint8)
    frames_[:, :, :16] = 200  # something to see; the sound is what is checked
    media.write_video(path, frames_, FPS, audio=wave if seconds else None)


def folder(root):
    (root / "clips").mkdir(parents=True)
    tone_clip(root / "clips" / "late.mp4", 16, sound_from=1.5)  # 2 s, the tone in the last quarter
    tone_clip(root / "clips" / "early.mp4", 8, sound_from=0.0)  # 1 s, a tone throughout
    tone_clip(root / "clips" / "mute.mp4", 8, sound_from=0.0, seconds=0)  # no audio track
    tone_clip(root / "clips" / "cut.mp4", 16, sound_from=0.0, seconds=0.5)  # sound stops after a quarter
    lines = [
        '{"video": "clips/late.mp4", "caption": "a late tone"}',
        '{"video": "clips/mute.mp4", "caption": "silence"}',
        '{"video": "clips/early.mp4", "caption": "a tone"}',
        '{"video": "clips/cut.mp4", "caption": "cut short"}',
    ]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")


def builder(root, prep, **settings):
    settings = {"image_size": 16, "min_frames": 4, "max_frames": 8, "audio": True, **settings}
    return jsonl.jsonl_builder(str(root), str(prep), **settings)


def test_a_clips_soundtrack_is_stored_over_the_time_its_frames_show(tmp_path):
    folder(tmp_path / "src")
    prepared = builders.prepare(builder(tmp_path / "src", tmp_path / "prep", bad_records="skip"))
    assert prepared.info.metadata["sample_rate"] == RATE
    assert prepared.info.metadata["bad_records"] == {"train": {"no audio": 1, "too short": 1}}
    records = {r["captions"][0].decode(): r for r in prepared.as_data_source("train")}
    assert sorted(records) == ["a late tone", "a tone"]
    late, early = records["a late tone"], records["a tone"]
    assert late["video"].shape == (8, 16, 16, 3) and late["audio"].shape == (2 * RATE,)
    assert early["audio"].shape == (RATE,) and late["audio"].dtype == np.float32
    # AAC's encoder delay is undone on decoding: the tone starts where it was written, to within a millisecond
    onset = np.flatnonzero(np.abs(late["audio"]) > 0.1)[0] / RATE
    assert abs(onset - 1.5) < 1e-3
    spectrum = np.abs(np.fft.rfft(early["audio"]))
    assert abs(np.argmax(spectrum) * RATE / early["audio"].size - 440) < 2


def test_a_clip_without_sound_fails_naming_its_line_before_anything_is_written(tmp_path):
    folder(tmp_path / "src")
    with pytest.raises(BadRecordError, match=r"train\.jsonl:2: no audio: .*mute\.mp4: no audio track"):
        builders.prepare(builder(tmp_path / "src", tmp_path / "prep"))
    assert not list((tmp_path / "prep").glob("**/*array_record*"))


def test_the_same_folder_without_audio_asked_is_the_video_dataset_it_was(tmp_path):
    folder(tmp_path / "src")
    silent = builder(tmp_path / "src", tmp_path / "prep", audio=False)
    assert silent.builder_config.name != builder(tmp_path / "src", tmp_path / "prep").builder_config.name
    prepared = builders.prepare(silent)  # every clip has frames enough; the sound is not looked at
    assert len(prepared.as_data_source("train")) == 4 and "audio" not in prepared.info.features
    with pytest.raises(ValueError, match=r"data.audio_samples: audio asked for, but the lines of .* name images"):
        (tmp_path / "img").mkdir()
        (tmp_path / "img" / "train.jsonl").write_text('{"image": "a.png", "caption": "x"}\n')
        jsonl.jsonl_builder(str(tmp_path / "img"), audio=True)


def test_batches_hold_each_clip_with_its_own_soundtrack(tmp_path):
    folder(tmp_path / "src")
    cfg = mmdata.default_config()
    cfg.update(source="jsonl", path=str(tmp_path / "src"), data_dir=str(tmp_path / "prep"), bad_records="skip")
    cfg.update(num_frames=4, image_size=16, audio_samples=2 * RATE, batch_size=2, random_crop=False)
    batch = next(iter(mmdata.build_pipeline(cfg, "train", train=False)))
    assert batch["image"].shape == (2, 4, 16, 16, 3) and batch["audio"].shape == (2, 2 * RATE)
    lengths = sorted(int(n) for n in batch["audio_length"])
    assert lengths == [RATE, 2 * RATE]  # the 1 s clip's sound is padded, with its true length


def test_an_audio_visual_model_trains_on_your_own_clips_with_sound(tmp_path):
    """av_shapes' classifier (both towers through a fusion) on a JSONL folder of mp4s: the frames and the
    soundtrack of each file reach the model together, and the class names become its classes."""
    import jax

    from mmjax import config as mmconfig
    from mmjax.train.loop import train

    root = tmp_path / "src"
    (root / "clips").mkdir(parents=True)
    for split, n in (("train", 6), ("test", 2)):
        lines = []
        for i in range(n):
            name = f"clips/{split}{i}.mp4"
            tone_clip(root / name, 8, sound_from=0.25 * (i % 2))
            lines.append(f'{{"video": "{name}", "label": "{"late" if i % 2 else "early"}"}}')
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    config = mmconfig.load_config(
        f"{repo}/configs/av_shapes.py:tiny",
        ["data.source=jsonl", f"data.path={root}", f"data.data_dir={tmp_path / 'prep'}", "data.label_field=label",
         "total_steps=2", "batch_size=2", "evals.classification.batch_size=2", "progress=False"],
    )  # fmt: skip
    result = train(config, str(tmp_path / "run"), devices=jax.devices()[:1])
    assert np.isfinite(result["loss"]) and "eval/classification/accuracy" in result
    info = __import__("json").loads((tmp_path / "run" / "dataset_info.json").read_text())
    assert info["classes"] == ["early", "late"]
