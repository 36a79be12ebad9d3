import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from mmjax.fusion import LateFusion
from mmjax.layers import Encoded


def _pooled(*widths):
    keys = jax.random.split(jax.random.key(0, impl="unsafe_rbg"), len(widths))
    names = ["audio", "image", "text"][: len(widths)]
    return {
        m: Encoded(tokens=jnp.zeros((2, 3, w)), mask=jnp.ones((2, 3), bool), pooled=jax.random.normal(k, (2, w)))
        for m, w, k in zip(names, widths, keys)
    }


def _apply(fusion, encodings):
    variables = jax.jit(fusion.init)(jax.random.key(1, impl="unsafe_rbg"), encodings)
    return jax.jit(fusion.apply)(variables, encodings), variables


def test_concat_sum_product():
    enc = _pooled(4, 4, 4)
    a, i, t = (enc[m].pooled for m in ("audio", "image", "text"))
    out, variables = _apply(LateFusion("concat"), enc)
    chex.assert_trees_all_close(out.pooled, jnp.concatenate([a, i, t], -1))
    assert not variables  # nothing to learn
    chex.assert_trees_all_close(_apply(LateFusion("sum"), enc)[0].pooled, a + i + t, rtol=1e-6)
    chex.assert_trees_all_close(_apply(LateFusion("product"), enc)[0].pooled, a * i * t, rtol=1e-6)
    assert out.tokens.shape == (2, 1, 12) and out.mask.shape == (2, 1)


def test_gate_starts_as_mean_and_learns_per_feature_weights():
    enc = _pooled(4, 4)
    fusion = LateFusion("gate")
    out, variables = _apply(fusion, enc)
    chex.assert_trees_all_close(out.pooled, (enc["audio"].pooled + enc["image"].pooled) / 2, rtol=1e-6)
    variables = nn.meta.unbox(variables)
    kernel = variables["params"]["gate"]["kernel"]
    variables["params"]["gate"]["kernel"] = jnp.sin(jnp.arange(kernel.size) * 1.3).reshape(kernel.shape)
    gated = jax.jit(fusion.apply)(variables, enc).pooled
    lo = jnp.minimum(enc["audio"].pooled, enc["image"].pooled)
    hi = jnp.maximum(enc["audio"].pooled, enc["image"].pooled)
    assert not jnp.allclose(gated, out.pooled)
    assert bool(jnp.all((gated >= lo - 1e-6) & (gated <= hi + 1e-6)))  # a convex combination per feature


def test_widths_project_or_fail():
    enc = _pooled(4, 6)
    out, variables = _apply(LateFusion("sum", width=6), enc)
    assert set(variables["params"]) == {"proj_audio"} and out.pooled.shape == (2, 6)
    assert _apply(LateFusion("concat"), enc)[0].pooled.shape == (2, 10)
    with pytest.raises(ValueError, match="needs equal pooled widths"):
        _apply(LateFusion("product"), enc)
    with pytest.raises(ValueError, match="unknown late-fusion combine 'max'"):
        _apply(LateFusion("max"), enc)
