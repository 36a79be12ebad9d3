import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import ViT, build_tower, vit_variant


def _tiny(**kw):
    return ViT(**{**dict(width=16, depth=2, num_heads=2, patch_size=4, image_size=16), **kw})


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_variants_expand_to_published_sizes():
    assert vit_variant("B/16") == dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=16)
    assert vit_variant("L/14")["patch_size"] == 14
    with pytest.raises(ValueError, match="unknown ViT variant"):
        vit_variant("Q/16")
    # ViT-B/16 at 224: ~86M parameters (without a classifier head); counted from shapes only
    model = build_tower("vit", variant="B/16")
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert 85.5e6 < _count(shapes["params"]) < 86.6e6


@pytest.mark.parametrize("pooling", ["tok", "gap", "map", "none"])
def test_pooling_modes(pooling):
    model = _tiny(pooling=pooling)
    x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
    v = model.init(jax.random.key(0), x)
    out = model.apply(v, x)
    n_tokens = 16 + (pooling == "tok")
    assert out.tokens.shape == (2, n_tokens, 16) and out.pooled.shape == (2, 16)
    assert out.mask.shape == (2, n_tokens) and bool(out.mask.all())
    if pooling == "tok":
        np.testing.assert_allclose(out.pooled, out.tokens[:, 0], atol=1e-6)
    if pooling == "gap":
        np.testing.assert_allclose(out.pooled, out.tokens.mean(1), atol=1e-6)


def test_final_norm_pooled_leaves_tokens_unnormalized():
    x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
    all_norm, pooled_norm = _tiny(final_norm="all"), _tiny(final_norm="pooled", pre_norm=True)
    a = all_norm.apply(all_norm.init(jax.random.key(0), x), x)
    np.testing.assert_allclose(a.tokens.mean(-1), 0.0, atol=1e-5)
    p = pooled_norm.apply(pooled_norm.init(jax.random.key(0), x), x)
    np.testing.assert_allclose(p.pooled.mean(-1), 0.0, atol=1e-5)
    assert not np.allclose(p.tokens.mean(-1), 0.0, atol=1e-3)


def test_wrong_size_or_channels_names_expected_and_got():
    model = _tiny()
    v = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"expects 16x16 images, got 24x24.*interpolate_pos_embed=True"):
        model.apply(v, jnp.zeros((1, 24, 24, 3)))
    with pytest.raises(ValueError, match="expects 3 channels .* got 1"):
        model.apply(v, jnp.zeros((1, 16, 16, 1)))
    with pytest.raises(ValueError, match="not divisible by the patch size 4"):
        _tiny(interpolate_pos_embed=True).apply(v, jnp.zeros((1, 18, 18, 3)))


def test_interpolated_position_embeddings_run_at_a_new_resolution():
    model = _tiny(interpolate_pos_embed=True)
    v = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    out = model.apply(v, jax.random.uniform(jax.random.key(1), (1, 24, 32, 3)))
    assert out.tokens.shape == (1, 1 + 6 * 8, 16)
    assert np.isfinite(np.asarray(out.pooled)).all()


def test_sincos_posemb_has_no_position_parameter_and_scan_matches_shapes():
    v = _tiny(posemb="sincos2d").init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    assert "pos_embedding" not in v["params"]
    scanned = jax.eval_shape(_tiny(scan=True).init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    plain = jax.eval_shape(_tiny().init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    assert _count(scanned) == _count(plain)
    assert nn.meta.unbox(scanned)["params"]["encoder"]["layers"]["mlp"]["fc1"]["kernel"].shape == (2, 16, 64)
