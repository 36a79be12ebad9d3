"""The layout transforms and scan stacking invert each other exactly."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mmjax.convert.mapping import (
    CONV,
    HEADS_BIAS,
    HEADS_IN,
    HEADS_OUT,
    LINEAR,
    Rule,
    flatten,
    hf_shapes,
    stack_layers,
    unflatten,
    unstack_layers,
)

# (transform, mmjax shape, Hugging Face shape)
CASES = [
    (LINEAR, (6, 10), (10, 6)),
    (HEADS_IN, (12, 3, 5), (15, 12)),
    (HEADS_BIAS, (3, 5), (15,)),
    (HEADS_OUT, (3, 5, 12), (12, 15)),
    (CONV, (4, 2, 3, 7), (7, 3, 4, 2)),
]


@pytest.mark.parametrize("transform, mm_shape, hf_shape", CASES, ids=[c[0].name for c in CASES])
def test_transforms_round_trip(transform, mm_shape, hf_shape):
    x = np.random.default_rng(0).normal(size=mm_shape).astype(np.float32)
    hf = transform.to_hf(x)
    assert hf.shape == hf_shape
    np.testing.assert_array_equal(np.asarray(transform.to_mm(hf)).reshape(mm_shape), x)
    rule = Rule("w", "k", transform)
    assert hf_shapes([rule], {"k": jax.ShapeDtypeStruct(mm_shape, np.float32)}) == {"w": hf_shape}


def test_heads_in_matches_torch_head_order():
    """Output feature h*Dh + d of a torch q/k/v Linear is head h, dim d (how transformers splits heads)."""
    d_model, heads, head_dim = 4, 3, 2
    weight = np.arange(heads * head_dim * d_model, dtype=np.float32).reshape(heads * head_dim, d_model)
    kernel = HEADS_IN.to_mm(weight).reshape(d_model, heads, head_dim)
    for h in range(heads):
        for d in range(head_dim):
            np.testing.assert_array_equal(kernel[:, h, d], weight[h * head_dim + d])


def test_stack_and_unstack_layers():
    scanned = {"enc": {"layers": {"w": np.arange(12.0).reshape(3, 4)}, "ln": {"b": np.ones(4)}}}
    unstacked = unstack_layers(scanned)
    assert sorted(unstacked["enc"]) == ["layer_0", "layer_1", "layer_2", "ln"]
    np.testing.assert_array_equal(unstacked["enc"]["layer_2"]["w"], [8.0, 9.0, 10.0, 11.0])
    restacked = stack_layers(unflatten(flatten(unstacked)), scanned)
    jax.tree.map(np.testing.assert_array_equal, restacked, scanned)
    abstract = unstack_layers(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), scanned))
    assert abstract["enc"]["layer_1"]["w"].shape == (4,)
