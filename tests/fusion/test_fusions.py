"""Properties every fusion in the table must have: the interface, padding invariance, modality order."""

import functools

import chex
import jax
import jax.numpy as jnp
import pytest
from fusion_testing import init_random, make_encodings, replace_tokens

from mmjax.fusion import FUSIONS, build_fusion

SMALL = dict(width=16, num_layers=2, num_heads=2, mlp_dim=32)
CASES = {
    "early": ("early", SMALL),
    "early_modality_pool": ("early", {**SMALL, "pool": "modality", "combine": "gate"}),
    "late_gate": ("late", dict(combine="gate", width=16)),
    "mid": ("mid", {**SMALL, "fusion_layer": 1}),
    "mid_coattention": ("mid", {**SMALL, "fusion_layer": 1, "joint": "coattention", "pool": "modality"}),
    "bottleneck": ("bottleneck", {**SMALL, "n_bottlenecks": 2, "fusion_layer": 0}),
}


@functools.cache
def _compiled(case):
    """(jitted apply, variables) per case, shared by the tests below so each case compiles once."""
    name, kwargs = CASES[case]
    fusion = build_fusion(name, **kwargs)
    return jax.jit(fusion.apply), init_random(fusion, make_encodings(0))


def test_table_names_every_fusion():
    assert set(FUSIONS) == {"early", "late", "mid", "bottleneck"}
    with pytest.raises(ValueError, match="unknown fusion 'nope'"):
        build_fusion("nope")


@pytest.mark.parametrize("case", sorted(CASES))
def test_padded_tokens_never_change_any_output(case, encodings):
    fusion, variables = _compiled(case)
    out = fusion(variables, encodings)
    perturbed = fusion(variables, replace_tokens(encodings, 3, "padded"))
    chex.assert_trees_all_close(out, perturbed, atol=1e-6, rtol=0)
    if case != "late_gate":  # late fusion reads only pooled vectors; the rest must see their real tokens
        changed = fusion(variables, replace_tokens(encodings, 3, "real"))
        assert not jnp.allclose(out.pooled, changed.pooled, atol=1e-3)


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_layout(case, encodings):
    fusion, variables = _compiled(case)
    out = fusion(variables, encodings)
    assert out.pooled.shape[0] == 2 and out.tokens.shape[-1] == 16
    if case == "late_gate":
        assert out.tokens.shape == (2, 1, 16) and out.mask.all()
        return
    expected_mask = jnp.concatenate([encodings["image"].mask, encodings["text"].mask], axis=1)  # sorted order
    assert out.tokens.shape == (2, 9, 16)
    assert (out.mask == expected_mask).all()
    assert (out.tokens[~expected_mask] == 0).all()  # padded positions are zeroed
    assert jnp.abs(out.tokens[expected_mask]).sum() > 0


@pytest.mark.parametrize("case", ["early", "bottleneck"])
def test_dict_order_does_not_matter(case, encodings):
    fusion, variables = _compiled(case)
    reordered = {"text": encodings["text"], "image": encodings["image"]}
    chex.assert_trees_all_close(fusion(variables, encodings), fusion(variables, reordered))


def test_explicit_modality_order_and_mismatch(encodings):
    fusion = build_fusion("early", **SMALL, modalities=("text", "image"))
    out = jax.jit(fusion.apply)(init_random(fusion, encodings), encodings)
    assert (out.mask[:, :4] == encodings["text"].mask).all()  # text first, as asked
    with pytest.raises(ValueError, match=r"expects modalities \('text', 'audio'\)"):
        jax.eval_shape(build_fusion("early", **SMALL, modalities=("text", "audio")).init, jax.random.key(1), encodings)


def test_width_mismatch_without_width_is_an_error(encodings):
    with pytest.raises(ValueError, match="different token widths"):
        jax.eval_shape(build_fusion("early", num_layers=1, num_heads=2).init, jax.random.key(1), encodings)
