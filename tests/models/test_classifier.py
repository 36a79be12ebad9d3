"""Classifier = any towers + any fusion (by name) + a head."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import TextTransformer, ViT
from mmjax.fusion import FUSIONS, build_fusion
from mmjax.layers import Encoded
from mmjax.models.classifier import Classifier

FUSION_KWARGS = {
    "early": dict(width=16, num_layers=1, num_heads=2),
    "late": dict(combine="gate", width=16),
    "mid": dict(width=16, num_layers=2, num_heads=2, fusion_layer=1),
    "bottleneck": dict(width=16, num_layers=2, num_heads=2, n_bottlenecks=2),
}


def _towers():
    return {
        "image": ViT(width=16, depth=1, num_heads=2, mlp_dim=32, patch_size=4, image_size=8),
        "text": TextTransformer(vocab_size=32, width=8, depth=1, num_heads=2, mlp_dim=16, max_length=6, pool="mean"),
    }


def _inputs():
    pixels = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 8, 8, 3)), jnp.float32)
    ids = jnp.array([[5, 6, 7, 0, 0, 0], [8, 9, 10, 11, 12, 0]], jnp.int32)
    return {"image": pixels, "text": (ids, (ids > 0).astype(jnp.int32))}


def _params(model, inputs):
    """Parameters from shapes and fixed numpy noise: no init compile, and the zero-initialized head is not zero."""
    leaves, tree = jax.tree.flatten(jax.eval_shape(model.init, jax.random.key(0), inputs))
    rng = np.random.default_rng(0)
    return jax.tree.unflatten(tree, [jnp.asarray(0.3 * rng.standard_normal(x.shape), jnp.float32) for x in leaves])


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_every_fusion_by_name(fusion):
    model = Classifier(_towers(), build_fusion(fusion, **FUSION_KWARGS[fusion]), num_classes=3)
    inputs = _inputs()
    variables = _params(model, inputs)
    ids, mask = inputs["text"]
    padded_changed = {**inputs, "text": (jnp.where(mask > 0, ids, 31), mask)}
    real_changed = {**inputs, "text": (ids.at[:, 0].set(30), mask)}
    apply = jax.jit(lambda batch: jnp.stack([model.apply(variables, x)["logits"] for x in batch]))
    logits, padded, real = apply((inputs, padded_changed, real_changed))
    assert logits.shape == (2, 3) and bool(jnp.isfinite(logits).all())
    chex.assert_trees_all_close(logits, padded, atol=1e-6)  # padded text tokens never reach the logits
    assert not jnp.allclose(logits, real, atol=1e-4)


def test_input_conventions_and_precomputed_features():
    model = Classifier(_towers(), build_fusion("late", combine="concat"), num_classes=3, head="answer")
    inputs = _inputs()
    variables = _params(model, inputs)
    ids, mask = inputs["text"]
    text_enc = model.apply(variables, ids, mask, method=lambda m, ids, mask: m.towers["text"](ids, mask))
    assert isinstance(text_enc, Encoded)
    variants = (
        inputs,
        {**inputs, "text": {"input_ids": ids, "attention_mask": mask}},
        {**inputs, "text": text_enc},  # precomputed features bypass the tower
    )
    outs = jax.jit(lambda vs: [model.apply(variables, v) for v in vs])(variants)
    for out in outs[1:]:
        chex.assert_trees_all_close(out, outs[0], atol=1e-6)
    assert outs[0]["logits"].shape == (2, 3) and outs[0]["pooled_output"].shape == (2, 24)  # concat 16 + 8


def test_bad_inputs_name_the_modality():
    model = Classifier(_towers(), build_fusion("late"), num_classes=3)
    inputs = _inputs()
    with pytest.raises(ValueError, match=r"no inputs for modalities \['text'\]"):
        jax.eval_shape(model.init, jax.random.key(0), {"image": inputs["image"]})
    extra = {**inputs, "audio": jnp.zeros((2, 4))}
    with pytest.raises(ValueError, match="modality 'audio' has no tower"):
        jax.eval_shape(model.init, jax.random.key(0), extra)
    with pytest.raises(ValueError, match="unknown head 'svm'"):
        jax.eval_shape(Classifier(_towers(), build_fusion("late"), 3, head="svm").init, jax.random.key(0), inputs)


def test_parameter_names_heads_and_hashability():
    model = Classifier(_towers(), build_fusion("early", **FUSION_KWARGS["early"]), 5, head_hidden_dim=12)
    params = jax.eval_shape(model.init, jax.random.key(0), _inputs())["params"]
    assert set(params) == {"towers_image", "towers_text", "fusion", "head"}
    assert set(params["head"]) == {"pre_logits", "logits"}
    answer = Classifier(_towers(), build_fusion("late", combine="sum", width=16), 7, head="answer")
    params = jax.eval_shape(answer.init, jax.random.key(0), _inputs())["params"]
    assert params["head"]["dense"]["kernel"].value.shape == (16, 32)  # 2 x the pooled width
    assert params["head"]["logits"]["kernel"].value.shape == (32, 7)
    assert hash(model) == hash(
        Classifier(_towers(), build_fusion("early", **FUSION_KWARGS["early"]), 5, head_hidden_dim=12)
    )
