"""Log-mel frontend parity with Hugging Face's AST and Whisper feature extractors (the oracle), masks, jit/batching.

Waveforms of different lengths share one padded batch with `lengths`, so each preset compiles once per batch shape
(the test is compile-bound on 2 CPU cores; the extractors themselves take well under a second per clip here).
"""

import glob
import wave

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import AST_FBANK, WHISPER_LOG_MEL, LogMelConfig, ast_features, log_mel, whisper_features

transformers = pytest.importorskip("transformers")

SR = 16000
# 0.5 s, 1.3 s (odd) and 3 s (odd) of noise, plus 300 samples: less than one AST frame (400), yet two Whisper frames
RANDOM_LENGTHS = (8000, 20807, 48001, 300)
WAV_DIR = "/usr/share/pocketsphinx/test/data"
TOLERANCE = 1e-4  # max |ours - reference| / (max - min of the reference)
# Kaldi's 128 mel bands over 257 FFT bins leave the lowest band without a bin; HF warns, both sides floor it alike
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values:UserWarning")


def _read_wav(path: str) -> np.ndarray:
    with wave.open(path) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (SR, 2, 1), path
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0


def _recordings() -> list[np.ndarray]:
    paths = sorted(glob.glob(f"{WAV_DIR}/**/*.wav", recursive=True))
    if not paths:
        pytest.skip(f"no WAVs under {WAV_DIR}: install the Debian package pocketsphinx-testdata (make data)")
    return [_read_wav(p) for p in paths]


def _noise() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.5 * rng.uniform(-1, 1, n)).astype(np.float32) for n in RANDOM_LENGTHS]


def _batch(waves: list[np.ndarray]) -> tuple[jax.Array, jax.Array]:
    """Zero-padded [B, max length] plus true lengths; the padding is filled with noise to prove it is ignored."""
    longest = max(len(w) for w in waves)
    out = np.random.default_rng(1).uniform(-1, 1, (len(waves), longest)).astype(np.float32)
    for i, w in enumerate(waves):
        out[i, : len(w)] = w
    return jnp.asarray(out), jnp.asarray([len(w) for w in waves])


def _reference(name: str, w: np.ndarray) -> np.ndarray:
    """HF's features for one waveform as [frames, mels]."""
    if name == "ast":
        return transformers.ASTFeatureExtractor()(w, sampling_rate=SR, return_tensors="np")["input_values"][0]
    feats = transformers.WhisperFeatureExtractor()(w, sampling_rate=SR, return_tensors="np")["input_features"][0]
    return feats.T


def _relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    # a reference with no range (all padding) is compared absolutely
    return float(np.abs(ours - ref).max() / max(ref.max() - ref.min(), 1.0))


FEATURES = {"ast": ast_features, "whisper": whisper_features}


@pytest.mark.parametrize("name", ["ast", "whisper"])
@pytest.mark.parametrize("source", ["noise", "recordings"])
def test_matches_hugging_face(name, source):
    waves = _noise() if source == "noise" else _recordings()
    feats, mask = FEATURES[name](*_batch(waves))
    feats, mask = np.asarray(feats), np.asarray(mask)
    errors = []
    for i, w in enumerate(waves):
        ref = _reference(name, w)
        assert feats[i].shape == ref.shape
        errors.append(_relative_error(feats[i], ref))
    assert max(errors) <= TOLERANCE, errors


def test_whisper_numpy_path_too():
    # With torch installed HF computes Whisper's STFT in torch float32; its numpy twin works in float64.
    w = _recordings()[0]
    padded = np.pad(w, (0, WHISPER_LOG_MEL.pad_samples - len(w)))[None]
    ref = transformers.WhisperFeatureExtractor()._np_extract_fbank_features(padded, "cpu")[0].T
    assert _relative_error(np.asarray(whisper_features(jnp.asarray(w)[None])[0][0]), ref) <= TOLERANCE


def test_masks_follow_true_lengths():
    lengths = [8000, 20807, 300, 100]
    x, n = _batch([np.zeros(k, np.float32) for k in lengths])
    _, ast_mask = ast_features(x, n)
    # AST: frames of 400 every 160 that fit inside the waveform (none for a clip shorter than one frame)
    np.testing.assert_array_equal(np.asarray(ast_mask).sum(1), [48, 128, 0, 0])
    _, whisper_mask = whisper_features(x, n)
    hf = transformers.WhisperFeatureExtractor()
    for i, k in enumerate(lengths):
        ref = hf(np.zeros(k, np.float32), sampling_rate=SR, return_attention_mask=True)["attention_mask"][0]
        np.testing.assert_array_equal(np.asarray(whisper_mask[i]), ref)


def test_shorter_than_one_frame_is_all_padding():
    # HF's AST extractor raises below 240 samples and returns only padding from 240 to 399; we return padding for all
    feats, mask = ast_features(jnp.ones((1, 100)))
    assert not np.asarray(mask).any()
    np.testing.assert_allclose(np.asarray(feats), -AST_FBANK.norm_mean / AST_FBANK.norm_scale, rtol=1e-6)


def test_batched_equals_one_by_one():
    waves = _noise()[:3]
    x, n = _batch(waves)
    for fn in (ast_features, whisper_features):
        batched = np.asarray(fn(x, n)[0])
        for i, w in enumerate(waves):
            alone = np.asarray(fn(jnp.asarray(w)[None])[0][0])
            np.testing.assert_allclose(batched[i], alone, atol=1e-5)


def test_general_config_shapes_and_jit():
    # a custom frontend: Kaldi fbank of 64 bins with a Povey window, no fixed length; jit composes with it
    config = LogMelConfig(
        fft_length=512, window="povey", center=False, remove_dc_offset=True, mel_bins=64, mel_scale="kaldi"
    )
    x = jax.random.uniform(jax.random.key(0), (2, 4000), minval=-1, maxval=1)
    feats, mask = jax.jit(lambda a: log_mel(a, config))(x)
    assert feats.shape == (2, 1 + (4000 - 400) // 160, 64) and bool(mask.all())
    assert np.isfinite(np.asarray(feats)).all()
    with pytest.raises(ValueError, match="unknown window"):
        log_mel(x, LogMelConfig(window="kaiser"))
