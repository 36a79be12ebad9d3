import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.layers import MultiHeadAttention, causal_mask, combine_masks, padding_mask


def _reference_attention(params, x, kv, mask):
    """Plain numpy multi-head attention from the parameter tree, the definition the module must follow."""
    p = jax.tree.map(np.asarray, params)
    q = np.einsum("btd,dhk->bthk", x, p["query"]["kernel"]) + p["query"]["bias"]
    k = np.einsum("btd,dhk->bthk", kv, p["key"]["kernel"]) + p["key"]["bias"]
    v = np.einsum("btd,dhk->bthk", kv, p["value"]["kernel"]) + p["value"]["bias"]
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(np.asarray(mask), logits, -1e30)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("bhqs,bshk->bqhk", w, v)
    return np.einsum("bqhk,hkd->bqd", o, p["out"]["kernel"]) + p["out"]["bias"]


@pytest.mark.parametrize("heads,width", [(3, 12), (5, 20), (1, 7)])
def test_self_attention_matches_reference_with_padding(heads, width):
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 6, width)))
    valid = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    mask = padding_mask(jnp.asarray(valid))
    mha = MultiHeadAttention(heads)
    params = nn.meta.unbox(mha.init(jax.random.key(0), x, mask=mask)["params"])
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(7), a.shape), params)
    got = mha.apply({"params": params}, x, mask=mask)
    np.testing.assert_allclose(got, _reference_attention(params, x, x, mask), atol=1e-5)


def test_padded_keys_do_not_change_outputs():
    mha = MultiHeadAttention(2)
    x = jax.random.normal(jax.random.key(1), (1, 5, 8))
    valid = jnp.array([[1, 1, 1, 0, 0]], bool)
    v = mha.init(jax.random.key(0), x)
    y1 = mha.apply(v, x, mask=padding_mask(valid))
    y2 = mha.apply(v, x.at[:, 3:].set(100.0), mask=padding_mask(valid))
    np.testing.assert_allclose(y1[:, :3], y2[:, :3], atol=1e-5)


def test_padding_mask_masks_keys_only_so_padded_query_rows_stay_finite():
    """Only keys are masked ([B, 1, 1, Tk], broadcast over queries): a padded query row attends to the real keys
    instead of to no key at all, which a softmax turns into uniform weights (XLA) or NaN (fused kernels)."""
    valid = jnp.array([[1, 1, 1, 0, 0]], bool)
    mask = padding_mask(valid)
    assert mask.shape == (1, 1, 1, 5)
    assert padding_mask(None) is None
    mha = MultiHeadAttention(2, dropout_rate=0.1)
    x = jax.random.normal(jax.random.key(1), (1, 5, 8))
    v = mha.init(jax.random.key(0), x)
    for deterministic in (True, False):  # the fused path and the explicit-softmax (dropout) path
        y = mha.apply(v, x, mask=mask, deterministic=deterministic, rngs={"dropout": jax.random.key(3)})
        assert np.isfinite(np.asarray(y)).all()


def test_causal_mask_hides_the_future():
    mha = MultiHeadAttention(2)
    x = jax.random.normal(jax.random.key(1), (1, 5, 8))
    v = mha.init(jax.random.key(0), x)
    y1 = mha.apply(v, x, mask=causal_mask(5))
    y2 = mha.apply(v, x.at[:, 3].set(-50.0), mask=causal_mask(5))
    np.testing.assert_allclose(y1[:, :3], y2[:, :3], atol=1e-5)
    assert not np.allclose(y1[:, 3:], y2[:, 3:])


def test_cross_attention_shapes_and_out_features():
    mha = MultiHeadAttention(4, out_features=6)
    q, kv = jnp.ones((2, 3, 8)), jax.random.normal(jax.random.key(2), (2, 7, 12))
    v = mha.init(jax.random.key(0), q, kv)
    assert mha.apply(v, q, kv).shape == (2, 3, 6)
    assert v["params"]["key"]["kernel"].value.shape == (12, 4, 2)


def test_dropout_is_active_only_when_training():
    mha = MultiHeadAttention(2, dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(1), (2, 5, 8))
    v = mha.init(jax.random.key(0), x)
    det = mha.apply(v, x)
    np.testing.assert_allclose(det, mha.apply(v, x, deterministic=True))
    train = mha.apply(v, x, deterministic=False, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(det, train)


def test_width_not_divisible_by_heads_is_an_error():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        MultiHeadAttention(3).init(jax.random.key(0), jnp.ones((1, 2, 8)))


def test_combine_masks():
    assert combine_masks(None, None) is None
    m = combine_masks(padding_mask(jnp.array([[1, 1, 0]], bool)), causal_mask(3))
    assert m.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(m[0, 0], [[1, 0, 0], [1, 1, 0], [1, 1, 0]])
