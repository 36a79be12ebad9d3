import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import Bert, TextTransformer
from mmjax.encoders.text import eot_positions


def _clip_text(**kw):
    return TextTransformer(**{**dict(vocab_size=50, width=16, depth=2, num_heads=2, max_length=8), **kw})


def _bert(**kw):
    return Bert(**{**dict(vocab_size=50, width=16, depth=2, num_heads=4, max_length=12), **kw})


def test_eot_positions():
    ids = jnp.array([[3, 9, 49, 0, 0], [3, 49, 7, 49, 0]])
    mask = ids > 0
    np.testing.assert_array_equal(eot_positions(ids, mask, "argmax", None), [2, 1])
    np.testing.assert_array_equal(eot_positions(ids, mask, "eos", 49), [2, 1])
    np.testing.assert_array_equal(eot_positions(ids, mask, "eos", 7), [2, 2])  # absent -> last real token
    np.testing.assert_array_equal(eot_positions(ids, mask, "last", None), [2, 3])


def test_clip_text_is_causal_and_pools_the_end_token():
    model = _clip_text()
    ids = jnp.array([[1, 5, 49, 0, 0], [1, 6, 7, 8, 49]])
    mask = ids > 0
    v = model.init(jax.random.key(0), ids, mask)
    out = model.apply(v, ids, mask)
    np.testing.assert_allclose(out.pooled[0], out.tokens[0, 2], atol=1e-6)
    np.testing.assert_allclose(out.pooled[1], out.tokens[1, 4], atol=1e-6)
    changed = model.apply(v, ids.at[1, 3].set(9), mask)  # a later token never reaches earlier positions
    np.testing.assert_allclose(changed.tokens[1, :3], out.tokens[1, :3], atol=1e-6)
    assert not np.allclose(changed.tokens[1, 3:], out.tokens[1, 3:])
    padded = model.apply(v, ids.at[0, 3:].set(17), mask)  # padding never reaches real positions
    np.testing.assert_allclose(padded.pooled, out.pooled, atol=1e-6)


def test_bert_is_bidirectional_and_ignores_padding():
    model = _bert()
    ids = jnp.array([[2, 5, 6, 3, 0, 0]])
    mask = ids > 0
    v = model.init(jax.random.key(0), ids, mask)
    out = model.apply(v, ids, mask)
    later = model.apply(v, ids.at[0, 3].set(9), mask)
    assert not np.allclose(later.tokens[0, 0], out.tokens[0, 0])  # first token sees later ones
    padded = model.apply(v, ids.at[0, 4:].set(11), mask)
    np.testing.assert_allclose(padded.tokens[0, :4], out.tokens[0, :4], atol=1e-5)
    np.testing.assert_allclose(padded.pooled, out.pooled, atol=1e-5)
    types = model.apply(v, ids, mask, token_type_ids=jnp.ones_like(ids))
    assert not np.allclose(types.tokens, out.tokens)


def test_bert_pooling_options_share_one_parameter_tree():
    ids = jnp.array([[2, 5, 6, 0]])
    mask = ids > 0
    v = _bert().init(jax.random.key(0), ids, mask)
    mean = _bert(pool="mean").apply(v, ids, mask)  # the pooler's weights exist under any pooling
    np.testing.assert_allclose(mean.pooled, mean.tokens[:, :3].mean(1), atol=1e-6)
    cls = _bert(pool="cls").apply(v, ids, mask)
    np.testing.assert_allclose(cls.pooled, cls.tokens[:, 0])
    with pytest.raises(ValueError, match="add_pooler"):
        _bert(add_pooler=False).init(jax.random.key(0), ids, mask)


def test_text_input_errors():
    model = _clip_text()
    with pytest.raises(ValueError, match="at most 8 tokens, got 9"):
        model.init(jax.random.key(0), jnp.ones((1, 9), jnp.int32))
    with pytest.raises(ValueError, match="attention_mask shape"):
        model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 3)))
