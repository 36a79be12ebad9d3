"""Captioner: teacher forcing, the decoder's key/value cache, greedy decoding and beam search."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import ViT
from mmjax.models.captioner import Captioner, beam_search, decoding_log_probs, greedy_decode, length_penalty

MAX_LEN = 8
MODEL = Captioner(
    ViT(width=16, depth=1, num_heads=2, mlp_dim=32, patch_size=4, image_size=8),
    vocab_size=13,
    max_length=MAX_LEN,
    width=16,
    num_layers=2,
    num_heads=2,
    mlp_dim=32,
    tie_embeddings=False,  # a tied random decoder mostly repeats its input token; untied gives varied captions
)
# bos is never emitted (decoding masks it), so eos_id=bos_id gives a run that never stops: the reference for
# where a real eos would cut it
NO_EOS = MODEL.clone(eos_id=MODEL.bos_id)
PIXELS = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 8, 8, 3)), jnp.float32)


@functools.cache
def variables():
    """Fixed numpy noise (LayerNorm scales around 1): no init compile, and distinct logits per token."""
    shapes = jax.eval_shape(MODEL.init, jax.random.key(0), PIXELS, jnp.ones((3, 4), jnp.int32))
    rng = np.random.default_rng(1)

    def fill(path, leaf):
        base = 1.0 if any(getattr(k, "key", None) == "scale" for k in path) else 0.0
        return jnp.asarray(base + 0.1 * rng.standard_normal(leaf.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.cache
def unstopped():
    return np.asarray(greedy_decode(NO_EOS, variables(), PIXELS))


def _eos_model():
    """A model whose eos is the second token of example 0's unstopped caption, so example 0 must stop by there."""
    return MODEL.clone(eos_id=int(unstopped()[0, 1]))


def _cut_at_eos(tokens, eos, pad):
    out = np.full_like(tokens, pad)
    for b, row in enumerate(tokens):
        hits = np.flatnonzero(row == eos)
        end = hits[0] + 1 if hits.size else len(row)
        out[b, :end] = row[:end]
    return out


def _teacher_forced_log_probs(model, tokens):
    """log p of each generated token [N, L], recomputed from scratch with teacher forcing."""
    n = tokens.shape[0]
    pixels = jnp.repeat(PIXELS, n // PIXELS.shape[0], axis=0)
    inputs = jnp.concatenate([jnp.full((n, 1), model.bos_id), tokens[:, :-1]], axis=1)
    logp = decoding_log_probs(model, jax.jit(model.apply)(variables(), pixels, inputs))
    return jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]


def test_cached_steps_match_teacher_forcing():
    ids = jnp.array([[1, 5, 7, 9, 4], [1, 3, 3, 8, 6], [1, 12, 11, 10, 2]], jnp.int32)
    full = jax.jit(MODEL.apply)(variables(), PIXELS, ids)
    assert full.shape == (3, 5, 13) and full.dtype == jnp.float32

    @jax.jit
    def step(tokens, index, cache):
        memory = MODEL.apply(variables(), PIXELS, method=Captioner.encode)
        state = variables() if cache is None else {**variables(), "cache": cache}
        logits, new = MODEL.apply(state, tokens, memory, index=index, method=Captioner.decode, mutable=["cache"])
        return logits, new["cache"]

    cache, stepped = None, []
    for t in range(ids.shape[1]):
        logits, cache = step(ids[:, t : t + 1], t, cache)
        stepped.append(logits[:, 0])
    chex.assert_trees_all_close(jnp.stack(stepped, 1), full, atol=1e-5)
    assert cache["decoder"]["layer_1"]["self_attn"]["cached_key"].shape == (3, MAX_LEN, 2, 8)
    assert cache["decoder"]["layer_0"]["cross_attn"]["cross_key"].shape == (3, 5, 2, 8)  # 4 patches + cls


def test_greedy_with_cache_equals_greedy_without_cache():
    tokens = unstopped()
    assert tokens.shape == (3, MAX_LEN) and (tokens != MODEL.pad_id).all()
    np.testing.assert_array_equal(np.asarray(greedy_decode(NO_EOS, variables(), PIXELS, use_cache=False)), tokens)
    assert len({tuple(r) for r in tokens}) > 1  # the image matters: captions differ


def test_greedy_stops_at_eos_and_pads_after():
    model = _eos_model()
    tokens = np.asarray(greedy_decode(model, variables(), PIXELS))
    np.testing.assert_array_equal(tokens, _cut_at_eos(unstopped(), model.eos_id, model.pad_id))
    assert (tokens[0, 2:] == model.pad_id).all()
    assert ((tokens != model.eos_id) & (tokens != model.pad_id)).all(axis=1).any()  # and one caption never ends


def test_max_length_is_respected():
    short = np.asarray(greedy_decode(NO_EOS, variables(), PIXELS, max_length=3))
    np.testing.assert_array_equal(short, unstopped()[:, :3])
    with pytest.raises(ValueError, match=r"max_length must be in \[1, 8\].*got 9"):
        greedy_decode(NO_EOS, variables(), PIXELS, max_length=9)
    with pytest.raises(ValueError, match="exceeds the position table of 8"):
        jax.eval_shape(MODEL.apply, variables(), PIXELS, jnp.ones((3, 9), jnp.int32))


def test_beam_of_one_is_greedy():
    model = _eos_model()
    greedy = greedy_decode(model, variables(), PIXELS)
    tokens, scores = beam_search(model, variables(), PIXELS, beam_size=1)
    np.testing.assert_array_equal(np.asarray(tokens[:, 0]), np.asarray(greedy))
    real = greedy != model.pad_id
    expected = jnp.sum(jnp.where(real, _teacher_forced_log_probs(model, greedy), 0.0), axis=1)
    chex.assert_trees_all_close(scores[:, 0], expected, atol=1e-4)


def test_beam_search_scores_eos_and_ordering():
    model, k, alpha = _eos_model(), 3, 0.6
    tokens, scores = beam_search(model, variables(), PIXELS, beam_size=k, alpha=alpha)
    assert tokens.shape == (3, k, MAX_LEN) and scores.shape == (3, k)
    flat = np.asarray(tokens).reshape(3 * k, MAX_LEN)
    np.testing.assert_array_equal(flat, _cut_at_eos(flat, model.eos_id, model.pad_id))  # only pad after eos
    assert len({tuple(r) for r in flat[:k]}) == k  # distinct hypotheses
    assert bool(jnp.all(scores[:, :-1] >= scores[:, 1:]))  # best first
    # every score is the hypothesis' own log-probability, recomputed without the cache, length-normalized
    real = flat != model.pad_id
    logp = jnp.sum(jnp.where(real, _teacher_forced_log_probs(model, jnp.asarray(flat)), 0.0), axis=1)
    expected = logp / length_penalty(jnp.asarray(real.sum(1)), alpha)
    chex.assert_trees_all_close(scores.reshape(-1), expected, atol=1e-4)
