import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import Bert, TextTransformer, ViT
from mmjax.models import CLIP

IMAGES = jax.random.uniform(jax.random.key(1), (3, 16, 16, 3))
IDS = jnp.array([[1, 5, 49, 0], [1, 49, 0, 0], [1, 7, 8, 49]])
MASK = IDS > 0


def _vit():
    return ViT(width=16, depth=1, num_heads=2, patch_size=8, image_size=16, pre_norm=True, final_norm="pooled")


def _clip(text=None, **kw):
    text = text or TextTransformer(vocab_size=50, width=12, depth=1, num_heads=3, max_length=8)
    return CLIP(_vit(), text, embed_dim=10, **kw)


def _run(model, *args, **kw):
    v = model.init(jax.random.key(0), IMAGES, IDS, MASK)
    return v, jax.jit(model.apply)(v, IMAGES, IDS, MASK, *args, **kw)


def test_outputs_are_consistent():
    model = _clip()
    v, out = _run(model)
    np.testing.assert_allclose(np.linalg.norm(out["image_embeds"], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["text_embeds"], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["logit_scale"], 1 / 0.07, rtol=1e-5)
    expected = out["logit_scale"] * out["text_embeds"] @ out["image_embeds"].T
    np.testing.assert_allclose(out["logits_per_text"], expected, atol=1e-5)
    np.testing.assert_allclose(out["logits_per_image"], expected.T, atol=1e-5)
    np.testing.assert_allclose(model.apply(v, IMAGES, method="encode_image"), out["image_embeds"], atol=1e-6)
    np.testing.assert_allclose(model.apply(v, IDS, MASK, method="encode_text"), out["text_embeds"], atol=1e-6)
    assert out["vision_model_output"]["last_hidden_state"].shape == (3, 5, 16)
    assert out["text_model_output"]["pooler_output"].shape == (3, 12)
    assert "logit_bias" not in out


def test_temperature_is_clamped_at_max_logit_scale():
    model = _clip()
    v = model.init(jax.random.key(0), IMAGES, IDS, MASK)
    v = jax.tree.map(lambda x: x, v)
    v["params"]["logit_scale"] = jnp.asarray(math.log(1000.0))
    out = model.apply(v, IMAGES, IDS, MASK)
    assert float(out["logit_scale"]) == pytest.approx(100.0)


def test_siglip_bias():
    model = _clip(logit_scale_init=math.log(10), logit_bias_init=-10.0)
    v, out = _run(model)
    assert float(v["params"]["logit_bias"]) == -10.0
    expected = 10.0 * out["text_embeds"] @ out["image_embeds"].T - 10.0
    np.testing.assert_allclose(out["logits_per_text"], expected, atol=1e-4)


def test_bert_text_tower_and_token_types():
    model = _clip(Bert(vocab_size=50, width=12, depth=1, num_heads=3, max_length=8, pool="mean"))
    v, out = _run(model)
    typed = model.apply(v, IMAGES, IDS, MASK, token_type_ids=jnp.ones_like(IDS))
    assert not np.allclose(typed["text_embeds"], out["text_embeds"])
    np.testing.assert_allclose(typed["image_embeds"], out["image_embeds"], atol=1e-6)


def test_towers_train_under_jit_with_dropout():
    text = TextTransformer(vocab_size=50, width=12, depth=1, num_heads=3, max_length=8, dropout_rate=0.1)
    model = _clip(text)
    v = nn.meta.unbox(model.init(jax.random.key(0), IMAGES, IDS, MASK))

    def loss(params, rng):
        out = model.apply({"params": params}, IMAGES, IDS, MASK, train=True, rngs={"dropout": rng})
        return -jnp.mean(jnp.diag(jax.nn.log_softmax(out["logits_per_image"], axis=-1)))

    grads = jax.jit(jax.grad(loss))(v["params"], jax.random.key(2))
    assert float(jnp.abs(grads["logit_scale"])) > 0
    assert float(jnp.abs(grads["image_tower"]["embedding"]["conv"]["kernel"]).sum()) > 0
    assert float(jnp.abs(grads["text_tower"]["token_embed"]["embedding"]).sum()) > 0
