"""FrameViT: an image ViT per frame (an image checkpoint loads into it), then a temporal model that sees order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import FrameViT, ViT

KW = dict(width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=8, image_size=32)


def _clip(t=4):
    return jax.random.normal(jax.random.key(0), (2, t, 32, 32, 3))


def test_an_image_vit_checkpoint_loads_and_identical_frames_give_its_output():
    image_params = ViT(**KW).init(jax.random.key(1), jnp.zeros((1, 32, 32, 3)))["params"]
    video = FrameViT(num_frames=4, temporal_depth=0, **KW)
    video_params = video.init(jax.random.key(2), _clip())["params"]
    assert jax.tree.map(jnp.shape, video_params) == jax.tree.map(jnp.shape, image_params)  # same names, no extras
    frame = _clip()[:, 0]
    still = jnp.repeat(frame[:, None], 4, axis=1)
    got = video.apply({"params": image_params}, still).pooled
    np.testing.assert_allclose(got, ViT(**KW).apply({"params": image_params}, frame).pooled, atol=1e-5)


def test_the_temporal_transformer_sees_frame_order_and_the_mean_does_not():
    clip = _clip()
    backwards = clip[:, ::-1]
    ordered = FrameViT(num_frames=4, temporal_depth=1, **KW)
    params = ordered.init(jax.random.key(3), clip)
    assert "temporal" in params["params"] and "temporal_pos_embedding" in params["params"]
    a, b = ordered.apply(params, clip).pooled, ordered.apply(params, backwards).pooled
    assert float(jnp.abs(a - b).max()) > 1e-3
    blind = FrameViT(num_frames=4, temporal_depth=0, **KW)
    params = blind.init(jax.random.key(3), clip)
    np.testing.assert_allclose(blind.apply(params, clip).pooled, blind.apply(params, backwards).pooled, atol=1e-5)
    out = ordered.apply(ordered.init(jax.random.key(3), clip), clip)
    assert out.tokens.shape == (2, 4, 32) and out.mask.shape == (2, 4)


def test_wrong_clip_shapes_are_named():
    video = FrameViT(num_frames=4, **KW)
    with pytest.raises(ValueError, match="built for 4 frames, got 3"):
        video.init(jax.random.key(0), _clip(3))
    with pytest.raises(ValueError, match=r"expects videos \[B, T, H, W, C\]"):
        video.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)))


def test_patch_tokens_are_each_frames_image_vit_patches_in_order():
    """tokens='patches' hands a fusion every frame's patches: frame t's are the image ViT's on that frame alone."""
    clip = _clip(3)
    video = FrameViT(num_frames=3, temporal_depth=0, tokens="patches", **KW)
    params = video.init(jax.random.key(4), clip)
    out = video.apply(params, clip)
    assert out.tokens.shape == (2, 3 * 16, 32) and out.mask.shape == (2, 48) and out.pooled.shape == (2, 32)
    for t in range(3):
        image = ViT(**KW).apply(params, clip[:, t]).tokens[:, 1:]  # the class token is not a patch
        np.testing.assert_allclose(out.tokens[:, 16 * t : 16 * (t + 1)], image, atol=1e-5)
    frames = FrameViT(num_frames=3, temporal_depth=0, **KW).apply(params, clip)
    np.testing.assert_allclose(out.pooled, frames.pooled, atol=1e-6)


def test_patch_tokens_refuse_a_temporal_model_and_unknown_token_kinds():
    with pytest.raises(ValueError, match="tokens='patches' takes temporal_depth 0, got 1"):
        FrameViT(num_frames=4, temporal_depth=1, tokens="patches", **KW).init(jax.random.key(0), _clip())
    with pytest.raises(ValueError, match="tokens must be 'frames' or 'patches', got 'tubelets'"):
        FrameViT(num_frames=4, tokens="tubelets", **KW).init(jax.random.key(0), _clip())
