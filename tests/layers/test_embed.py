import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.layers import PatchEmbed, PositionEmbed, TokenEmbed, interpolate_posemb, sincos_2d


def test_patch_embed_shape():
    pe = PatchEmbed(width=6, patch_size=4)
    v = pe.init(jax.random.key(0), jnp.ones((2, 16, 12, 3)))
    assert pe.apply(v, jnp.ones((2, 16, 12, 3))).shape == (2, 12, 6)


def test_token_embed_attend_is_the_transposed_table():
    te = TokenEmbed(vocab_size=11, width=4)
    v = te.init(jax.random.key(0), jnp.array([[1, 2]]))
    table = v["params"]["embedding"].value
    x = jax.random.normal(jax.random.key(1), (3, 4))
    np.testing.assert_allclose(te.apply(v, x, method="attend"), x @ table.T, atol=1e-6)
    np.testing.assert_allclose(te.apply(v, jnp.array([[3]]))[0, 0], table[3])


def test_position_embed_offset_ids_and_overflow():
    pe = PositionEmbed(max_length=5)
    x = jnp.zeros((1, 3, 4))
    v = pe.init(jax.random.key(0), x)
    table = v["params"]["embedding"].value
    np.testing.assert_allclose(pe.apply(v, x, offset=2)[0], table[2:5])
    np.testing.assert_allclose(pe.apply(v, x, position_ids=jnp.array([[4, 0, 1]]))[0], table[jnp.array([4, 0, 1])])
    with pytest.raises(ValueError, match="exceeds the position table of 5"):
        pe.apply(v, jnp.zeros((1, 6, 4)))


def test_interpolate_posemb_keeps_prefix_and_is_identity_at_same_size():
    table = jax.random.normal(jax.random.key(0), (1 + 16, 8))
    assert interpolate_posemb(table, (4, 4), (4, 4)) is table
    big = interpolate_posemb(table, (4, 4), (8, 6), num_prefix_tokens=1)
    assert big.shape == (1 + 48, 8)
    np.testing.assert_allclose(big[0], table[0])
    # a constant grid stays constant under resizing
    const = jnp.concatenate([table[:1], jnp.ones((16, 8))])
    np.testing.assert_allclose(interpolate_posemb(const, (4, 4), (7, 7), 1)[1:], 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="expected 5x5"):
        interpolate_posemb(table, (5, 5), (6, 6), 1)


def test_sincos_2d():
    e = sincos_2d(3, 4, 16)
    assert e.shape == (12, 16)
    assert len({tuple(np.round(r, 5)) for r in e}) == 12  # every position distinct
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(2, 2, 6)
