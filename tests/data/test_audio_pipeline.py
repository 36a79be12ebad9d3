"""Audio through the pipeline: waveforms padded or cut to `data.audio_samples` with their true lengths, the spoken
sources, and the one-line errors when the config and the records disagree about audio."""

from __future__ import annotations

import numpy as np
import pytest

from mmjax import config as mmconfig
from mmjax import data as mmdata
from mmjax.data import examples, preprocess, spoken
from mmjax.data.tokenizers import clip_tokenizer

CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    cfg = mmdata.default_config()
    cfg.data_dir = str(tmp_path_factory.mktemp("audio_data"))
    cfg.source = "spoken_digits"
    cfg.spoken_digits.update(num_train=12, num_validation=2, num_test=5)
    cfg.audio_samples = 8000
    cfg.tokenizer.max_length = 8
    cfg.batch_size = 4
    return cfg


def _to_example(samples: int, window: bool = False) -> examples.ToExample:
    tok = clip_tokenizer(max_length=8)
    return examples.ToExample(
        "image_text", preprocess.ImagePreprocessor(), tok, "s", fields={"captions": "text"}, audio_samples=samples,
        audio_random_window=window,
    )  # fmt: skip


def _record(wave) -> dict:
    return {"index": 0, "audio": np.asarray(wave, np.float32), "text": b"seven", "label": 7}


def test_waveforms_are_padded_or_cut_with_their_true_length():
    rng = np.random.default_rng(0)
    short, long = np.arange(1, 301, dtype=np.float32), np.arange(1, 2001, dtype=np.float32)
    out = _to_example(1000).random_map(_record(short), rng)
    assert out["audio"].shape == (1000,) and int(out["audio_length"]) == 300
    np.testing.assert_array_equal(out["audio"][:300], short)
    assert not out["audio"][300:].any() and "image" not in out
    out = _to_example(1000).random_map(_record(long), rng)  # evaluation: the start of a longer clip
    np.testing.assert_array_equal(out["audio"], long[:1000])
    starts = {int(_to_example(1000, window=True).random_map(_record(long), np.random.default_rng(s))["audio"][0])
              for s in range(20)}  # fmt: skip
    assert len(starts) > 5 and all(1 <= s <= 1001 for s in starts)  # training: a random window, always whole


def test_bad_audio_is_a_bad_record_and_placeholders_match_examples():
    to_example = _to_example(1000)
    assert "empty audio" in to_example.random_map(_record([]), np.random.default_rng(0)).reason
    bad = to_example.random_map({**_record([1.0]), "audio": np.zeros((2, 5), np.uint8)}, np.random.default_rng(0))
    assert "float32 waveform" in bad.reason
    real = to_example.random_map(_record(np.ones(10)), np.random.default_rng(0))
    blank = to_example.placeholder()
    assert {k: (np.shape(v), np.asarray(v).dtype) for k, v in blank.items()} == {
        k: (np.shape(v), np.asarray(v).dtype) for k, v in real.items()
    }


def test_spoken_digits_batches_hold_audio_the_digit_and_its_word(config):
    it = mmdata.build_pipeline(config, "test", train=False)
    batch = {k: np.asarray(v) for k, v in next(it).items()}
    assert batch["audio"].shape == (4, 8000) and batch["audio"].dtype == np.float32
    assert "image" not in batch
    for row in range(4):
        want = spoken.spoken_digit(0, "test", int(batch["image_id"][row]))  # the audio_id, through FIELDS
        n = min(want["audio"].size, 8000)
        assert int(batch["audio_length"][row]) == n and int(batch["label"][row]) == want["label"]
        np.testing.assert_array_equal(batch["audio"][row, :n], want["audio"][:n])


def test_records_and_config_must_agree_on_audio(config):
    images = config.copy_and_resolve_references()
    images.audio_samples = 0
    with pytest.raises(ValueError, match=r"data.audio_samples: the records of mmjax_spoken_digits/train hold audio"):
        mmdata.build_pipeline(images, "train")
    rate = config.copy_and_resolve_references()
    rate.sample_rate = 8000
    with pytest.raises(ValueError, match="data.sample_rate is 8000 but .* at 16000 Hz"):
        mmdata.build_pipeline(rate, "train")


def test_spoken_captions_builder_stores_the_phrase_as_the_caption(config):
    cfg = config.copy_and_resolve_references()
    cfg.source = "spoken_captions"
    cfg.spoken_captions.update(num_train=3, num_validation=1, num_test=2)
    source = mmdata.open_source(cfg, "test")
    record = source.data[1]
    want = spoken.spoken_caption(0, "test", int(record["audio_id"]))
    assert record["text"].decode() == want["text"] and record["voice"].decode() in spoken.HELD_OUT_VOICES
    np.testing.assert_array_equal(record["audio"], want["audio"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.audio_samples=0"], "'data.audio_samples' must be > 0 with data.source='spoken_digits'"),
        (["model.image.frontend=None"], "'model.image.frontend' must be set"),
        (["data.audio_samples=32000"], "gives 198 frames, more than 'model.image.max_length' (98)"),
        (["data.sample_rate=8000"], "'data.sample_rate' is 8000 but the audio towers' frontends take 16000 Hz"),
    ],
)
def test_audio_config_mistakes_fail_in_one_line_naming_the_key(overrides, message):
    with pytest.raises(mmconfig.ConfigError) as e:
        mmconfig.load_config(f"{CONFIGS}/audio_digits.py:tiny", overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_image_tower_refuses_audio():
    with pytest.raises(mmconfig.ConfigError, match="'data.audio_samples' is 16000 but model.image .* not an audio"):
        mmconfig.load_config(f"{CONFIGS}/clip_shapes.py:tiny", ["data.audio_samples=16000"])


@pytest.mark.parametrize(
    ("spec", "overrides", "message"),
    [
        ("av_shapes.py:tiny", ["model.audio.frontend=None"], "'model.audio.frontend' must be set"),
        (
            "av_shapes.py:tiny",
            ["data.audio_samples=32000"],
            "gives 198 frames, more than 'model.audio.max_length' (98)",
        ),
        ("av_shapes.py:tiny", ["data.num_frames=4"], "'data.num_frames' (4) and 'model.image.num_frames' (8) disagree"),
        ("av_shapes.py:tiny,modality=video", ["model.kind=av"], "'model.fusion' is required with model.kind='av'"),
        ("audio_digits.py:tiny", ["model.kind=audio"], "'model.audio' is required with model.kind='audio'"),
        ("av_shapes.py:tiny,task=correspondence", ["model.shift=1.5"], "'model.shift' must be in (0, 1), got 1.5"),
        ("av_shapes.py:tiny,task=localization", ["data.audio_samples=32000"], "more than 'model.audio.max_length'"),
    ],
)
def test_audio_visual_config_mistakes_fail_in_one_line_naming_the_key(spec, overrides, message):
    with pytest.raises(mmconfig.ConfigError) as e:
        mmconfig.validate(mmconfig.load_config(f"{CONFIGS}/{spec}", overrides), 1)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("modality, kind", [("both", "av"), ("video", "tower"), ("audio", "audio")])
def test_a_clip_and_its_soundtrack_resolve_each_tower_against_its_own_data_key(modality, kind):
    """model.image (a video tower) against data.num_frames, model.audio (an audio tower) against data.audio_samples:
    the same batches for the fused model and each single-modality control."""
    config = mmconfig.load_config(f"{CONFIGS}/av_shapes.py:tiny,modality={modality}")
    mmconfig.validate(config, 1)
    assert config.model.kind == kind
    assert (config.data.num_frames, config.data.audio_samples, config.data.image_size) == (8, 16_000, 32)
