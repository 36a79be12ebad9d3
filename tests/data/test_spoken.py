"""Spoken data synthesised offline by eSpeak NG: deterministic, balanced, with voices held out of training."""

import shutil

import numpy as np
import pytest

from mmjax.data import builders
from mmjax.data import spoken as sp

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs the eSpeak NG synthesiser: apt-get install espeak-ng"
)


def test_same_index_same_waveform_and_labels_cycle_through_the_digits():
    a, b = sp.spoken_digit(0, "train", 7), sp.spoken_digit(0, "train", 7)
    np.testing.assert_array_equal(a["audio"], b["audio"])
    assert a["label"] == 7 and a["text"] == "seven"
    assert [sp.spoken_digit(0, "train", i)["label"] for i in range(12)] == [*range(10), 0, 1]
    assert a["audio"].dtype == np.float32 and 0.05 < np.abs(a["audio"]).max() <= 1.0
    assert 0.2 < a["audio"].size / sp.SAMPLE_RATE < 2.0  # one word, at 16 kHz


def test_the_test_split_is_spoken_by_voices_training_never_hears():
    train, test = set(sp.voices("train")), set(sp.voices("test"))
    assert train.isdisjoint(test) and train | test == set(sp.VOICES)
    assert sp.voices("validation") == sp.voices("train")
    assert {sp.spoken_digit(0, "test", i)["voice"] for i in range(10)} <= test
    assert {sp.spoken_digit(0, "train", i)["voice"] for i in range(10)} <= train
    with pytest.raises(ValueError, match="splits"):
        sp.voices("compositional")


def test_slower_speech_is_longer_and_voices_differ():
    slow, fast = sp.synthesize("three", speed=100), sp.synthesize("three", speed=220)
    assert slow.size > 1.4 * fast.size
    us, scottish = sp.synthesize("three", "en-us"), sp.synthesize("three", "en-gb-scotland")
    assert us.size != scottish.size or not np.allclose(us, scottish)


def test_without_espeak_the_error_names_the_package(monkeypatch):
    sp._espeak.cache_clear()
    monkeypatch.setattr(sp.shutil, "which", lambda name: None)
    try:
        with pytest.raises(sp.SynthesisError, match="apt-get install espeak-ng"):
            sp.synthesize("one")
    finally:
        sp._espeak.cache_clear()


def test_a_spoken_caption_names_the_first_two_objects_of_the_scene_s_caption():
    from mmjax.data import shapes

    c = sp.spoken_caption(0, "train", 0)
    caption = shapes.generate(0, "train", 0, 32)["captions"][0]
    first, second = c["text"].split(" and ")
    assert caption.startswith(f"{first}, {second}") and "," not in c["text"]
    assert sp.object_phrase("a large blue cross at the top and a small purple diamond at the bottom.") == (
        "a large blue cross at the top and a small purple diamond at the bottom"
    )
    assert sp.object_phrase("a large blue cross at the top.") == "a large blue cross at the top"
    assert sp.object_phrase("a b at the top, a c at the left and a d at the right.", objects=1) == "a b at the top"
    assert 2 * sp.SAMPLE_RATE < c["audio"].size < 7 * sp.SAMPLE_RATE


def test_the_builder_stores_the_synthesised_digits(tmp_path):
    builder = builders.prepare(builders.spoken_digits_builder(str(tmp_path), num_train=4, num_validation=1, num_test=2))
    assert builder.info.metadata["classes"] == list(sp.DIGITS)
    test = builder.as_data_source("test")
    for r in (test[i] for i in range(len(test))):
        want = sp.spoken_digit(0, "test", int(r["audio_id"]))
        np.testing.assert_array_equal(r["audio"], want["audio"])
        assert int(r["label"]) == want["label"] and r["voice"].decode() in sp.HELD_OUT_VOICES
