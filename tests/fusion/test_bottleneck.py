"""MBT bottlenecks are the only path between modalities.

In a fusion layer a modality attends to [its tokens; the bottleneck tokens it was given]; the bottleneck it
hands on reaches the other modality one layer later. So, changing the image tokens (num_layers=2):
  - one fusion layer (fusion_layer=1):    text outputs unchanged (the image update has no later layer to reach);
  - two fusion layers (fusion_layer=0):   text outputs change (through the bottleneck);
  - two fusion layers, n_bottlenecks=0:   text outputs unchanged (no path at all).
A fusion that let text attend to image tokens directly fails the first case; one that did not share the averaged
bottleneck fails the second.
"""

import jax
import jax.numpy as jnp
import pytest
from fusion_testing import init_random, replace_tokens

from mmjax.fusion import BottleneckFusion

SMALL = dict(width=16, num_layers=2, num_heads=2, mlp_dim=32)


def _text_outputs(fusion, variables, encodings):
    out = fusion.apply(variables, encodings)  # callers jit around this
    return jnp.where(encodings["text"].mask[..., None], out.tokens[:, 5:], 0)  # text comes after 5 image tokens


@pytest.mark.parametrize("fusion_layer, n_bottlenecks, text_changes", [(1, 4, False), (0, 4, True), (0, 0, False)])
def test_information_crosses_only_through_bottlenecks(encodings, fusion_layer, n_bottlenecks, text_changes):
    fusion = BottleneckFusion(**SMALL, fusion_layer=fusion_layer, n_bottlenecks=n_bottlenecks, pool="mean")
    variables = init_random(fusion, encodings)
    text_outputs = jax.jit(lambda encs: _text_outputs(fusion, variables, encs))
    before = text_outputs(encodings)
    after = text_outputs(replace_tokens(encodings, 3, "real", only="image"))
    if text_changes:
        assert not jnp.allclose(before, after, atol=1e-4)
    else:
        assert jnp.array_equal(before, after)  # exactly: no path, not merely a small one


def test_parameter_names(encodings):
    fusion = BottleneckFusion(**SMALL, fusion_layer=1, n_bottlenecks=3)
    params = jax.eval_shape(fusion.init, jax.random.key(1), encodings)["params"]
    expected = {"proj_text", "encoder_image", "encoder_text", "bottleneck", "ln_final_image", "ln_final_text"}
    expected |= {"fusion_0_image", "fusion_0_text"}
    assert set(params) == expected
    assert params["bottleneck"].value.shape == (3, 16)
