"""Mid fusion's two limits, with the same weights: fusion_layer=0 is early fusion; fusion_layer=num_layers is
per-modality encoders followed by late fusion. And ViLBERT co-attention mixes the streams."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from fusion_testing import init_random, replace_tokens

from mmjax.fusion import CoAttentionBlock, EarlyFusion, LateFusion, MidFusion
from mmjax.layers import Encoded, Encoder, dense, layer_norm, masked_mean, padding_mask

SMALL = dict(width=16, num_layers=2, num_heads=2, mlp_dim=32, pool="modality", combine="gate")


def test_fusion_layer_zero_is_early_fusion(encodings):
    early = EarlyFusion(**SMALL)
    variables = init_random(early, encodings)
    mid = MidFusion(**SMALL, fusion_layer=0)
    mid_shapes = jax.eval_shape(mid.init, jax.random.key(1), encodings)
    assert jax.tree.structure(mid_shapes) == jax.tree.structure(variables)  # one parameter tree for both
    chex.assert_trees_all_close(
        jax.jit(mid.apply)(variables, encodings), jax.jit(early.apply)(variables, encodings), atol=1e-6
    )


@pytest.mark.parametrize("scan", [False, True])
def test_fusion_layer_last_is_per_modality_encoders_then_late_fusion(encodings, scan):
    mid = MidFusion(**SMALL, fusion_layer=2, scan=scan)
    variables = nn.meta.unbox(init_random(mid, encodings))
    params = variables["params"]
    assert "joint" not in params and "type_embed" not in params

    # the reference: each modality through its own encoder + final norm, pooled, then LateFusion; weights copied
    @jax.jit
    def reference(params, encodings):
        per_modality = {}
        for m, enc in encodings.items():
            x = enc.tokens
            if f"proj_{m}" in params:
                proj = dense(16, ("embed", "mlp"), dtype=jnp.float32, param_dtype=jnp.float32)
                x = proj.apply({"params": params[f"proj_{m}"]}, x)
            encoder = Encoder(num_layers=2, num_heads=2, mlp_dim=32, scan=scan)
            x = encoder.apply({"params": params[f"encoder_{m}"]}, x, padding_mask(enc.mask))
            ln = layer_norm(1e-6, dtype=jnp.float32, param_dtype=jnp.float32, name=None)
            x = ln.apply({"params": params[f"ln_final_{m}"]}, x)
            per_modality[m] = Encoded(tokens=x, mask=enc.mask, pooled=masked_mean(x, enc.mask))
        late = LateFusion("gate", modalities=("image", "text"))
        return per_modality, late.apply({"params": params["pool_fusion"]}, per_modality)

    per_modality, expected = reference(params, encodings)
    out = jax.jit(mid.apply)(variables, encodings)
    chex.assert_trees_all_close(out.pooled, expected.pooled, atol=1e-5)
    for m, part in zip(("image", "text"), jnp.split(out.tokens, [5], axis=1)):
        real = encodings[m].mask[..., None]
        chex.assert_trees_all_close(jnp.where(real, part, 0), jnp.where(real, per_modality[m].tokens, 0), atol=1e-5)


@pytest.mark.parametrize("joint", ["concat", "coattention"])
def test_streams_meet_only_after_fusion_layer(encodings, joint):
    """Before the joint layers the streams are independent; with one joint layer, text sees the image."""
    for fusion_layer, should_change in ((2, False), (1, True)):
        mid = MidFusion(**SMALL, fusion_layer=fusion_layer, joint=joint)
        apply = jax.jit(mid.apply)
        variables = init_random(mid, encodings)
        out = apply(variables, encodings)
        other = apply(variables, replace_tokens(encodings, 4, "real", only="image"))
        text = encodings["text"].mask
        changed = not jnp.allclose(out.tokens[:, 5:][text], other.tokens[:, 5:][text], atol=1e-5)
        assert changed == should_change, (joint, fusion_layer)


def test_coattention_block_shapes_and_errors():
    streams = {"image": jnp.ones((2, 3, 8)), "text": jnp.ones((2, 4, 8))}
    masks = {"image": jnp.ones((2, 3), bool), "text": jnp.ones((2, 4), bool)}
    block = CoAttentionBlock(("image", "text"), num_heads=2, mlp_dim=16)
    variables = jax.jit(block.init)(jax.random.key(0, impl="unsafe_rbg"), streams, masks)
    out = jax.jit(block.apply)(variables, streams, masks)
    assert jax.tree.map(jnp.shape, out) == {"image": (2, 3, 8), "text": (2, 4, 8)}
    assert {"cross_image", "cross_text", "block_image", "ln_q_text", "ln_kv_image"} <= set(variables["params"])
    with pytest.raises(ValueError, match="at least two streams"):
        jax.eval_shape(CoAttentionBlock(("image",), num_heads=2, mlp_dim=16).init, jax.random.key(0), streams, masks)
    with pytest.raises(ValueError, match=r"fusion_layer must be in \[0, num_layers=2\], got 3"):
        mid = MidFusion(num_layers=2, num_heads=2, fusion_layer=3)
        jax.eval_shape(mid.init, jax.random.key(0), {"a": _enc(), "b": _enc()})


def _enc():
    return Encoded(tokens=jnp.ones((1, 2, 8)), mask=jnp.ones((1, 2), bool), pooled=jnp.ones((1, 8)))
