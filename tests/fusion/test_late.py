import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
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


class _LateClassifier(nn.Module):
    combine: str

    @nn.compact
    def __call__(self, encodings):
        return nn.Dense(2)(LateFusion(self.combine, width=8)(encodings).pooled)


@pytest.mark.parametrize("combine, learns", [("product", True), ("concat", False), ("sum", False)])
def test_only_a_multiplicative_late_fusion_binds_what_one_modality_says_to_what_the_other_shows(combine, learns):
    # av_shapes' fused label in miniature: the video says which of two shapes is large, the audio which sounds;
    # the class (is the sounding one large?) is their XOR, which a linear head over a sum of the two cannot fit
    video = jnp.array([[1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, 1.0]])
    audio = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    labels = jnp.array([1, 0, 0, 1])
    enc = {
        m: Encoded(tokens=x[:, None], mask=jnp.ones((4, 1), bool), pooled=x) for m, x in (("v", video), ("a", audio))
    }
    model = _LateClassifier(combine)
    params = model.init(jax.random.key(0, impl="unsafe_rbg"), enc)
    opt = optax.adam(0.05)

    @jax.jit
    def step(params, state):
        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, enc), labels).mean()

        updates, state = opt.update(jax.grad(loss)(params), state)
        return optax.apply_updates(params, updates), state

    state = opt.init(params)
    for _ in range(300):
        params, state = step(params, state)
    accuracy = float(jnp.mean(jnp.argmax(model.apply(params, enc), -1) == labels))
    assert accuracy == 1.0 if learns else accuracy <= 0.75
