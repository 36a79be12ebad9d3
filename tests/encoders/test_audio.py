"""Spectrogram towers: AST (shapes, input checks, time interpolation, initialisation from an image ViT) and the
Whisper-style encoder."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import AST, ViT, WhisperEncoder, ast_from_vit
from mmjax.encoders.audio import sinusoids
from mmjax.layers import interpolate_posemb

SMALL = dict(width=24, depth=2, mlp_dim=40, num_heads=3)


def small_vit(image_size: int = 48, **kwargs) -> ViT:
    return ViT(**SMALL, patch_size=16, image_size=image_size, **kwargs)


def vit_params(vit: ViT, seed: int = 0) -> dict:
    images = jnp.zeros((1, vit.image_size, vit.image_size, 3))
    return nn.meta.unbox(vit.init(jax.random.key(seed), images)["params"])


def test_ast_shapes_and_pooling():
    ast = AST(**SMALL, patch_size=6, frequency_stride=5, time_stride=4, num_mel_bins=24, max_length=37)
    x = jax.random.normal(jax.random.key(1), (2, 37, 24))
    variables = ast.init(jax.random.key(0), x)
    out = ast.apply(variables, x)
    assert ast.grid == (4, 8)
    assert out.tokens.shape == (2, 2 + 32, 24) and out.mask.shape == (2, 34) and bool(out.mask.all())
    np.testing.assert_allclose(out.pooled, (out.tokens[:, 0] + out.tokens[:, 1]) / 2, rtol=1e-6)
    params = nn.meta.unbox(variables["params"])
    assert params["embedding"]["conv"]["kernel"].shape == (6, 6, 1, 24)  # (frequency, time, 1 channel, D)


def test_ast_checks_its_input_and_interpolates_time():
    ast = AST(**SMALL, patch_size=4, frequency_stride=4, time_stride=2, num_mel_bins=8, max_length=12)
    x = jnp.ones((1, 12, 8))
    variables = ast.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="mel bins"):
        ast.apply(variables, jnp.ones((1, 12, 9)))
    with pytest.raises(ValueError, match="interpolate_pos_embed"):
        ast.apply(variables, jnp.ones((1, 16, 8)))
    out = ast.clone(interpolate_pos_embed=True).apply(variables, jnp.ones((1, 16, 8)))
    assert out.tokens.shape == (1, 2 + 2 * 7, 24)


def test_ast_from_vit_shapes_tokens_and_kernel():
    vit = small_vit(image_size=48)  # a 3 x 3 patch grid
    params = vit_params(vit)
    ast = AST(**SMALL, patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=28, max_length=51)
    assert ast.grid == (2, 4)
    new = ast_from_vit(params, ast)
    assert new["pos_embedding"].shape == (2 + 8, 24)
    np.testing.assert_array_equal(new["cls_token"], params["cls_token"])
    np.testing.assert_array_equal(new["dist_token"], params["cls_token"])
    np.testing.assert_array_equal(new["pos_embedding"][:2], np.stack([params["pos_embedding"][0]] * 2))
    kernel = params["embedding"]["conv"]["kernel"]
    np.testing.assert_allclose(new["embedding"]["conv"]["kernel"][..., 0, :], kernel.sum(axis=2), rtol=1e-6)
    mean = ast_from_vit(params, ast, channel_reduce="mean")["embedding"]["conv"]["kernel"]
    np.testing.assert_allclose(mean[..., 0, :], kernel.mean(axis=2), rtol=1e-6)
    assert new["encoder"] is params["encoder"] and new["ln_post"] is params["ln_post"]
    # The result is a complete AST: it runs.
    out = ast.apply({"params": new}, jnp.ones((2, 51, 28)))
    assert out.pooled.shape == (2, 24)


def test_ast_from_vit_keeps_the_table_on_an_unchanged_grid():
    vit = small_vit(image_size=32)  # 2 x 2 patches, as the AST's non-overlapping 32 x 32 spectrogram below
    params = vit_params(vit, seed=3)
    ast = AST(**SMALL, patch_size=16, frequency_stride=16, time_stride=16, num_mel_bins=32, max_length=32)
    new = ast_from_vit(params, ast)
    np.testing.assert_array_equal(new["pos_embedding"][2:], params["pos_embedding"][1:])


def test_bilinear_table_resize_is_exact_on_a_linear_table():
    # A table linear in the grid coordinates stays linear under bilinear resizing (away from the edges, where
    # the half-pixel convention clamps); a wrong axis order would break this.
    rows, cols = np.mgrid[:4, :4].astype(np.float32)
    table = np.stack([rows, cols], -1).reshape(16, 2)
    out = np.asarray(interpolate_posemb(jnp.asarray(table), (4, 4), (4, 8), method="bilinear")).reshape(4, 8, 2)
    np.testing.assert_allclose(out[:, :, 0], np.broadcast_to(rows[:, :1], (4, 8)), atol=1e-6)
    np.testing.assert_allclose(out[1, 2:6, 1], (np.arange(2, 6) + 0.5) / 2 - 0.5, atol=1e-6)


def test_ast_from_vit_refuses_what_it_cannot_carry():
    ast = AST(**SMALL, patch_size=16, frequency_stride=16, time_stride=16, num_mel_bins=32, max_length=32)
    clip_like = vit_params(small_vit(image_size=32, pre_norm=True))
    with pytest.raises(ValueError, match="ln_pre"):
        ast_from_vit(clip_like, ast)
    with pytest.raises(ValueError, match="class token"):
        ast_from_vit(vit_params(small_vit(image_size=32, pooling="gap")), ast)
    with pytest.raises(ValueError, match="kernel"):
        ast_from_vit(vit_params(small_vit(image_size=32)), ast.clone(patch_size=8))


def test_whisper_encoder_shapes_positions_and_no_key_bias():
    enc = WhisperEncoder(**SMALL, num_mel_bins=10, max_positions=9)
    x = jax.random.normal(jax.random.key(1), (2, 17, 10))  # odd: ceil(17 / 2) = 9 positions
    variables = enc.init(jax.random.key(0), x)
    params = nn.meta.unbox(variables["params"])
    np.testing.assert_array_equal(params["pos_embedding"], sinusoids(9, 24))
    assert params["conv1"]["kernel"].shape == (3, 10, 24) and params["conv2"]["kernel"].shape == (3, 24, 24)
    assert "bias" not in params["encoder"]["layer_0"]["attn"]["key"]
    out = enc.apply(variables, x)
    assert out.tokens.shape == (2, 9, 24) and out.pooled.shape == (2, 24)
    assert enc.apply(variables, x[:, :6]).tokens.shape == (2, 3, 24)
    with pytest.raises(ValueError, match="positions"):
        enc.apply(variables, jnp.zeros((1, 19, 10)))
