import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.layers import MultiHeadAttention, causal_mask, combine_masks, padding_mask


def _reference_attention(params, x, kv, mask):
    """Plain numpy multi-head attention from the parameter tree, the definition the module must follow."""
    p = jax.tree.map(np.asarray, params)
    q = np.einsum("btd,dhk->bthk", x, p["query"]["kernel"]) + p["query"]["bias"]
    k = np.einsum("btd,dhk->bthk", kv, p["key"]["kernel"]) + p["key"]["bias"]
    v = np.einsum("btd,dhk->bthk", kv, p["value"]["kernel"]) + p["value"]["bias"]
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(np.asarray(mask), logits, -1e30)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("bhqs,bshk->bqhk", w, v)
    return np.einsum("bqhk,hkd->bqd", o, p["out"]["kernel"]) + p["out"]["bias"]


@pytest.mark.parametrize("heads,width", [(3, 12), (5, 20), (1, 7)])
def test_self_attention_matches_reference_with_padding(heads, width):
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 6, width)))
    valid = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    mask = padding_mask(jnp.asarray(valid))
    mha = MultiHeadAttention(heads)
    params = nn.meta.unbox(mha.init(jax.random.key(0), x, mask=mask)["params"])
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(7), a.shape), params)
    got = mha.apply({"params": params}, x, mask=mask)
    np.testing.assert_allclose(got, _reference_attention(params, x, x, mask), atol=1e-5)


def test_padded_keys_do_not_change_outputs():
    mha = MultiHeadAttention(2)
    x = jax.random.normal(jax.random.key(1), (1, 5, 8))
    valid = jnp.array([[1, 1, 1, 0, 0]], bool)
    v = mha.init(jax.random.key(0), x)
    y1 = mha.apply(v, x, mask=padding_mask(valid))
    y2 = mha.apply(v, x.at[:, 3:].set(100.0), mask=padding_mask(valid))
    np.testing.assert_allclose(y1[:, :3], y2[:, :3], atol=1e-5)


def test_padding_mask_masks_keys_only_so_padded_query_rows_stay_finite():
    """Only keys are masked ([B, 1, 1, Tk], broadcast over queries): a padded query row attends to the real keys
    instead of to no key at all, which a softmax turns into uniform weights (XLA) or NaN (fused kernels)."""
    valid = jnp.array([[1, 1, 1, 0, 0]], bool)
    mask = padding_mask(valid)
    assert mask.shape == (1, 1, 1, 5)
    assert padding_mask(None) is None
    mha = MultiHeadAttention(2, dropout_rate=0.1)
    x = jax.random.normal(jax.random.key(1), (1, 5, 8))
    v = mha.init(jax.random.key(0), x)
    for deterministic in (True, False):  # the fused path and the explicit-softmax (dropout) path
        y = mha.apply(v, x, mask=mask, deterministic=deterministic, rngs={"dropout": jax.random.key(3)})
        assert np.isfinite(np.asarray(y)).all()


def test_causal_mask_hides_the_future():
    mha = MultiHeadAttention(2)
    x = jax.random.normal(jax.random.key(1), (1, 5, 8))
    v = mha.init(jax.random.key(0), x)
    y1 = mha.apply(v, x, mask=causal_mask(5))
    y2 = mha.apply(v, x.at[:, 3].set(-50.0), mask=causal_mask(5))
    np.testing.assert_allclose(y1[:, :3], y2[:, :3], atol=1e-5)
    assert not np.allclose(y1[:, 3:], y2[:, 3:])


def test_cross_attention_shapes_and_out_features():
    mha = MultiHeadAttention(4, out_features=6)
    q, kv = jnp.ones((2, 3, 8)), jax.random.normal(jax.random.key(2), (2, 7, 12))
    v = mha.init(jax.random.key(0), q, kv)
    assert mha.apply(v, q, kv).shape == (2, 3, 6)
    assert v["params"]["key"]["kernel"].value.shape == (12, 4, 2)


def test_dropout_is_active_only_when_training():
    mha = MultiHeadAttention(2, dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(1), (2, 5, 8))
    v = mha.init(jax.random.key(0), x)
    det = mha.apply(v, x)
    np.testing.assert_allclose(det, mha.apply(v, x, deterministic=True))
    train = mha.apply(v, x, deterministic=False, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(det, train)


def test_width_not_divisible_by_heads_is_an_error():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        MultiHeadAttention(3).init(jax.random.key(0), jnp.ones((1, 2, 8)))


def test_combine_masks():
    assert combine_masks(None, None) is None
    m = combine_masks(padding_mask(jnp.array([[1, 1, 0]], bool)), causal_mask(3))
    assert m.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(m[0, 0], [[1, 0, 0], [1, 1, 0], [1, 1, 0]])


def test_cudnn_asked_for_off_gpu_falls_back_to_xla_with_the_same_outputs(caplog):
    """A config written for a GPU (attention_impl='cudnn') runs on a CPU: XLA's kernel, identical outputs, one
    warning naming why; None never asks for cuDNN off a GPU."""
    from mmjax.encoders import ViT
    from mmjax.layers.attention import choose_implementation

    images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    outputs = {}
    for impl in ("xla", "cudnn", None):
        vit = ViT(width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=8, image_size=32, attention_impl=impl)
        variables = vit.init(jax.random.key(1), images)
        with caplog.at_level("WARNING"):
            outputs[impl] = vit.apply(variables, images).tokens
    np.testing.assert_array_equal(outputs["cudnn"], outputs["xla"])
    np.testing.assert_array_equal(outputs[None], outputs["xla"])
    assert "attention_impl='cudnn' does not apply (backend is cpu, not gpu)" in caplog.text
    q = jnp.zeros((2, 16, 4, 64), jnp.bfloat16)
    assert choose_implementation(q, q, None, None) == "xla"
    assert choose_implementation(q, q, None, "xla") == "xla"


def test_fused_attention_conditions_name_what_does_not_fit(monkeypatch):
    from mmjax.layers import attention

    monkeypatch.setattr(attention.jax, "default_backend", lambda: "gpu")
    q = jnp.zeros((2, 16, 4, 64), jnp.bfloat16)
    odd = jnp.zeros((2, 17, 4, 64), jnp.bfloat16)
    mask = jnp.ones((2, 1, 1, 17), bool)
    assert attention.fused_attention_applies(q, q, None) is None
    assert attention.choose_implementation(q, q, None, None) == "cudnn"
    assert "dtype float32" in attention.fused_attention_applies(q.astype(jnp.float32), q, None)
    assert "head dim 12" in attention.fused_attention_applies(q[..., :12], q[..., :12], None)
    assert attention.fused_attention_applies(odd, odd, None) is None  # ViT-B/16's 197 tokens: padded, no mask
    assert "odd lengths 17x17" in attention.fused_attention_applies(odd, odd, mask)


@pytest.mark.parametrize("t,s", [(17, 17), (5, 9), (8, 7)])
def test_odd_lengths_padded_for_the_fused_kernel_give_the_unpadded_attention(t, s):
    """ViT-B/16's 197 tokens reach cuDNN padded to 198 with the extra key excluded by its key lengths; the same
    padding through XLA's kernel shows the result equals attention over the unpadded operands."""
    from mmjax.layers.attention import fused_attention

    q = jax.random.normal(jax.random.key(0), (2, t, 3, 8))
    k, v = (jax.random.normal(jax.random.key(i), (2, s, 3, 8)) for i in (1, 2))
    want = jax.nn.dot_product_attention(q, k, v)
    got = fused_attention(q, k, v, None, implementation="xla")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)
    grads = [
        jax.grad(lambda q, f=f: f(q).sum())(q)
        for f in (lambda q: fused_attention(q, k, v, None, "xla"), lambda q: jax.nn.dot_product_attention(q, k, v))
    ]
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-5)


def test_a_key_padding_mask_reaches_the_fused_kernel_in_the_shape_it_takes():
    """cuDNN takes a mask as a bias of the logits' [.., T, S] shape: a [B, 1, 1, S] key-padding mask is broadcast
    first (through XLA's kernel here, the same arithmetic)."""
    from mmjax.layers.attention import fused_attention

    q = jax.random.normal(jax.random.key(0), (2, 6, 2, 8))
    k, v = (jax.random.normal(jax.random.key(i), (2, 4, 2, 8)) for i in (1, 2))
    mask = padding_mask(jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool))
    np.testing.assert_allclose(
        fused_attention(q, k, v, mask, implementation="xla"),
        jax.nn.dot_product_attention(q, k, v, mask=mask),
        atol=1e-6,
    )
