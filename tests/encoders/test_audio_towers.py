"""Audio towers fed waveforms (`frontend`): the spectrogram they compute is the reference extractor's, so a tower
with a frontend is the same model as the tower without one fed that extractor's features; and the CNN baseline."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import AST, AST_FBANK, WHISPER_LOG_MEL, SpectrogramCNN, WhisperEncoder, log_mel

RATE = 16_000


def _waves(lengths, samples):
    rng = np.random.default_rng(0)
    out = np.zeros((len(lengths), samples), np.float32)
    for i, n in enumerate(lengths):
        out[i, :n] = 0.1 * rng.standard_normal(n)
    return jnp.asarray(out), jnp.asarray(lengths, jnp.int32)


def test_ast_with_frontend_equals_ast_on_the_extractor_features():
    kw = dict(width=24, depth=1, num_heads=2, num_mel_bins=32, max_length=60, time_stride=12, frequency_stride=8)
    waves, lengths = _waves([9000, 6100], 9000)
    features, _ = log_mel(waves, dataclasses.replace(AST_FBANK, mel_bins=32, num_frames=60), lengths)
    plain = AST(**kw)
    params = plain.init(jax.random.key(0), features)
    want = plain.apply(params, features)
    got = AST(**kw, frontend="ast").apply(params, waves, lengths)  # same parameters: the frontend has none
    np.testing.assert_allclose(got.tokens, want.tokens, atol=1e-5)
    as_pair = AST(**kw, frontend="ast").apply(params, (waves, lengths))  # how the trainer's visual slot passes audio
    np.testing.assert_array_equal(as_pair.tokens, got.tokens)


def test_ast_frontend_honours_true_lengths_not_the_zeros_after_them():
    # AST's extractor pads the features of a short clip, not its waveform: the frames past the true length must
    # hold the padding value, which the zero samples alone would not give
    kw = dict(width=16, depth=1, num_heads=2, num_mel_bins=32, max_length=60, frontend="ast")
    waves, lengths = _waves([5000, 5000], 9000)
    ast = AST(**kw)
    params = ast.init(jax.random.key(0), waves, lengths)
    with_lengths = ast.apply(params, waves, lengths).pooled
    without = ast.apply(params, waves).pooled
    assert not np.allclose(with_lengths, without, atol=1e-4)
    shorter = ast.apply(params, waves[:, :5000], lengths).pooled  # the same clip in a shorter buffer
    np.testing.assert_allclose(with_lengths, shorter, atol=1e-5)


def test_whisper_with_frontend_pads_every_clip_to_its_window():
    kw = dict(width=16, depth=1, num_heads=2, num_mel_bins=40, max_positions=25)
    waves, lengths = _waves([4000, 7000], 7000)
    tower = WhisperEncoder(**kw, frontend="whisper")
    params = tower.init(jax.random.key(0), waves)
    out = tower.apply(params, waves)
    assert out.tokens.shape == (2, 25, 16)  # 2 * 25 frames of 10 ms = 8000 samples, the window
    padded = jnp.pad(waves, ((0, 0), (0, 1000)))  # Whisper's extractor pads with zeros: nothing changes
    np.testing.assert_allclose(tower.apply(params, padded).tokens, out.tokens, atol=1e-5)
    config = dataclasses.replace(WHISPER_LOG_MEL, mel_bins=40, pad_samples=8000)
    features, _ = log_mel(waves, config)
    np.testing.assert_allclose(WhisperEncoder(**kw).apply(params, features).tokens, out.tokens, atol=1e-5)


def test_towers_refuse_spectrograms_when_they_expect_waveforms():
    with pytest.raises(ValueError, match=r"takes waveforms \[B, samples\]"):
        AST(width=16, depth=1, num_heads=2, frontend="ast").init(jax.random.key(0), jnp.zeros((1, 1024, 128)))
    with pytest.raises(ValueError, match="frontend: expected one of"):
        SpectrogramCNN(frontend="mfcc").init(jax.random.key(0), jnp.zeros((1, 16000)))


def test_spectrogram_cnn_shapes_names_and_time_order():
    cnn = SpectrogramCNN(channels=(8, 16), width=24, num_mel_bins=32, groups=4, frontend="ast")
    waves, lengths = _waves([RATE, RATE], RATE)
    params = cnn.init(jax.random.key(0), waves, lengths)
    out = cnn.apply(params, waves, lengths)
    assert out.tokens.shape == (2, 98 // 4, 24) and out.pooled.shape == (2, 24) and out.mask.all()
    assert set(params["params"]) == {"conv_0_0", "conv_0_1", "norm_0_0", "norm_0_1", "conv_1_0", "conv_1_1",
                                     "norm_1_0", "norm_1_1", "proj"}  # fmt: skip
    reversed_tokens = cnn.apply(params, waves[:, ::-1], lengths).tokens
    assert not np.allclose(reversed_tokens, out.tokens, atol=1e-3)
    grads = jax.grad(lambda p: cnn.apply(p, waves, lengths).pooled.sum())(params)
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))


def test_spectrogram_cnn_refuses_what_it_cannot_pool():
    with pytest.raises(ValueError, match="cannot be pooled 3 times"):
        SpectrogramCNN(num_mel_bins=64).init(jax.random.key(0), jnp.zeros((1, 5, 64)))
    with pytest.raises(ValueError, match="not divisible by 8"):
        SpectrogramCNN(channels=(12,), num_mel_bins=64).init(jax.random.key(0), jnp.zeros((1, 16, 64)))
