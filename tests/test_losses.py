import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mmjax import losses, sharding


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _embeds(b, d, seed):
    rng = np.random.default_rng(seed)
    return _unit(rng.normal(size=(b, d))), _unit(rng.normal(size=(b, d)))


# ------------------------------------------------- float64 numpy references (loss and analytic gradients)


def _ref_softmax(img, txt, scale):
    """CLIP loss and d loss / d (img, txt) in float64."""
    b = img.shape[0]
    z = scale * img @ txt.T
    lse_rows = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    lse_cols = np.log(np.exp(z - z.max(0, keepdims=True)).sum(0)) + z.max(0)
    loss = 0.5 * (np.mean(lse_rows - np.diag(z)) + np.mean(lse_cols - np.diag(z)))
    p_rows = np.exp(z - lse_rows[:, None])
    p_cols = np.exp(z - lse_cols[None, :])
    dz = 0.5 / b * (p_rows - np.eye(b)) + 0.5 / b * (p_cols - np.eye(b))
    return loss, scale * dz @ txt, scale * dz.T @ img


def _ref_sigmoid(img, txt, scale, bias):
    """SigLIP loss and d loss / d (img, txt, bias) in float64."""
    b = img.shape[0]
    z = scale * img @ txt.T + bias
    y = 2 * np.eye(b) - 1
    loss = -np.sum(_log_sigmoid(y * z)) / b
    dz = -y / (1 + np.exp(y * z)) / b  # d/dz of -log sigmoid(y z) = -y sigmoid(-y z)
    return loss, scale * dz @ txt, scale * dz.T @ img, dz.sum()


def _clip(img, txt, scale):
    return losses.softmax_contrastive_loss(losses.contrastive_logits(img, txt, scale))


def _siglip(img, txt, scale, bias):
    return losses.sigmoid_contrastive_loss(losses.contrastive_logits(img, txt, scale, bias))


# ------------------------------------------------------------------------------------ hand-computed


def test_softmax_two_examples_by_hand():
    loss, metrics = losses.softmax_contrastive_loss(jnp.array([[2.0, 0.0], [0.0, 2.0]]))
    np.testing.assert_allclose(loss, math.log(1 + math.exp(-2)), rtol=1e-6)
    assert metrics["i2t_accuracy"] == 1.0 and metrics["t2i_accuracy"] == 1.0

    # Asymmetric: image->text and text->image differ.
    img = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    txt = jnp.array([[1.0, 0.0], [0.6, 0.8]])
    loss, metrics = _clip(img, txt, 1.0)  # logits [[1, 0.6], [0, 0.8]]
    i2t = (math.log(math.e + math.exp(0.6)) - 1 + math.log(1 + math.exp(0.8)) - 0.8) / 2
    t2i = (math.log(math.e + 1) - 1 + math.log(math.exp(0.6) + math.exp(0.8)) - 0.8) / 2
    np.testing.assert_allclose(metrics["loss_i2t"], i2t, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss_t2i"], t2i, rtol=1e-6)
    np.testing.assert_allclose(loss, (i2t + t2i) / 2, rtol=1e-6)
    # Column 1's best image is image 1 (0.8 > 0.6), column 0's is image 0: both directions retrieve correctly.
    assert metrics["t2i_accuracy"] == 1.0 and metrics["i2t_accuracy"] == 1.0


def test_sigmoid_two_examples_by_hand():
    loss, metrics = losses.sigmoid_contrastive_loss(jnp.array([[2.0, 0.0], [0.0, 2.0]]))
    # Two positives at logit 2, two negatives at logit 0, divided by B = 2.
    np.testing.assert_allclose(loss, math.log(1 + math.exp(-2)) + math.log(2), rtol=1e-6)
    np.testing.assert_allclose(metrics["positive_logit"], 2.0)
    np.testing.assert_allclose(metrics["negative_logit"], 0.0)

    img = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    txt = jnp.array([[1.0, 0.0], [0.6, 0.8]])
    loss, _ = _siglip(img, txt, 2.0, -1.0)  # logits [[1, 0.2], [-1, 0.6]]
    expected = (
        math.log(1 + math.exp(-1.0))  # positive 1
        + math.log(1 + math.exp(0.2))  # negative 0.2
        + math.log(1 + math.exp(-1.0))  # negative -1
        + math.log(1 + math.exp(-0.6))  # positive 0.6
    ) / 2
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_aligned_embeddings_with_large_scale_give_near_zero_loss():
    b, d = 8, 16
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))
    emb = jnp.asarray(q[:b], jnp.float32)  # orthonormal rows: positives cos 1, negatives cos 0
    soft, soft_metrics = _clip(emb, emb, 100.0)
    sig, _ = _siglip(emb, emb, 100.0, -50.0)
    assert float(soft) < 1e-6 and float(sig) < 1e-6
    assert soft_metrics["i2t_accuracy"] == 1.0
    # Pairing image i with text i+1 instead: every positive is now a miss, and both losses are large.
    shifted = jnp.roll(emb, 1, axis=0)
    assert float(_clip(emb, shifted, 100.0)[0]) > 50.0
    assert float(_siglip(emb, shifted, 100.0, -50.0)[0]) > 50.0
    assert _clip(emb, shifted, 100.0)[1]["i2t_accuracy"] == 0.0


def test_losses_match_float64_reference_on_one_device():
    img, txt = _embeds(6, 5, seed=1)
    loss, *_ = _ref_softmax(img, txt, 7.0)
    np.testing.assert_allclose(_clip(jnp.float32(img), jnp.float32(txt), 7.0)[0], loss, rtol=1e-6)
    loss, *_ = _ref_sigmoid(img, txt, 7.0, -3.0)
    np.testing.assert_allclose(_siglip(jnp.float32(img), jnp.float32(txt), 7.0, -3.0)[0], loss, rtol=1e-6)


def test_non_square_logits_rejected():
    with pytest.raises(ValueError, match=r"square \[B, B\] .* got shape \(2, 3\)"):
        losses.softmax_contrastive_loss(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        losses.sigmoid_contrastive_loss(jnp.zeros((4,)))


def test_bfloat16_inputs_give_float32_loss():
    img, txt = _embeds(4, 8, seed=2)
    loss16, _ = _clip(jnp.bfloat16(img), jnp.bfloat16(txt), 10.0)
    loss32, _ = _clip(jnp.float32(img), jnp.float32(txt), 10.0)
    assert loss16.dtype == jnp.float32
    np.testing.assert_allclose(loss16, loss32, atol=0.05)


# ------------------------------------------------------------------------------------- sharded batch


@pytest.fixture(scope="module")
def data_mesh():
    assert jax.device_count() == 8, "tests/conftest.py must set --xla_force_host_platform_device_count=8"
    return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _sharded_value_and_grad(fn, mesh, img, txt, *extra):
    rows = NamedSharding(mesh, P("data", None))
    args = (jax.device_put(jnp.float32(img), rows), jax.device_put(jnp.float32(txt), rows))
    argnums = tuple(range(2 + len(extra)))
    step = jax.jit(jax.value_and_grad(lambda *a: fn(*a)[0], argnums=argnums))
    with sharding.activation_context(mesh, "dp"):
        return step(*args, *(jnp.float32(e) for e in extra)), args


def test_softmax_loss_sharded_over_batch_matches_reference(data_mesh):
    img, txt = _embeds(16, 32, seed=3)  # two examples per device
    (loss, (g_img, g_txt, _)), args = _sharded_value_and_grad(_clip, data_mesh, img, txt, 10.0)
    assert args[0].sharding.shard_shape(args[0].shape) == (2, 32)
    ref_loss, ref_img, ref_txt = _ref_softmax(img, txt, 10.0)
    np.testing.assert_allclose(loss, ref_loss, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(g_img, ref_img, atol=1e-6)
    np.testing.assert_allclose(g_txt, ref_txt, atol=1e-6)
    # The reference sums over all 16 negatives: the loss of each device's 2-example shard alone is different.
    local = _ref_softmax(img[:2], txt[:2], 10.0)[0]
    assert abs(local - ref_loss) > 0.1


def test_sigmoid_loss_sharded_over_batch_matches_reference(data_mesh):
    img, txt = _embeds(16, 32, seed=4)
    (loss, (g_img, g_txt, g_scale, g_bias)), _ = _sharded_value_and_grad(_siglip, data_mesh, img, txt, 10.0, -5.0)
    ref_loss, ref_img, ref_txt, ref_bias = _ref_sigmoid(img, txt, 10.0, -5.0)
    np.testing.assert_allclose(loss, ref_loss, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(g_img, ref_img, atol=1e-6)
    np.testing.assert_allclose(g_txt, ref_txt, atol=1e-6)
    np.testing.assert_allclose(g_bias, ref_bias, atol=1e-6, rtol=1e-6)
    # d loss / d scale = sum(dz * cos) = (g_img . img) / scale.
    np.testing.assert_allclose(g_scale, np.sum(ref_img * img) / 10.0, atol=1e-6, rtol=1e-6)


def test_logits_stay_row_sharded(data_mesh):
    img, txt = _embeds(16, 32, seed=5)
    rows = NamedSharding(data_mesh, P("data", None))
    img, txt = jax.device_put(jnp.float32(img), rows), jax.device_put(jnp.float32(txt), rows)
    logits_fn = jax.jit(lambda i, t: losses.contrastive_logits(i, t, 10.0))
    loss_fn = jax.jit(lambda i, t: _clip(i, t, 10.0)[0])
    with sharding.activation_context(data_mesh, "dp"):
        logits = logits_fn(img, txt)
        hlo = loss_fn.lower(img, txt).as_text()
    assert logits.sharding.spec == P("data", None)
    assert logits.sharding.shard_shape(logits.shape) == (2, 16)  # 2 rows x all 16 columns per device
    # The constraint is in the loss program too, so the compiler cannot choose to replicate [B, B].
    assert "sdy.sharding_constraint %" in hlo and '[{"data"}, {}]> : tensor<16x16xf32>' in hlo


# -------------------------------------------------------------------------------- token cross-entropy


def test_cross_entropy_by_hand():
    logits = jnp.array([[0.0, math.log(3.0)]])  # p = [1/4, 3/4]
    labels = jnp.array([1])
    loss, metrics = losses.masked_cross_entropy(logits, labels)
    np.testing.assert_allclose(loss, -math.log(0.75), rtol=1e-6)
    assert metrics["accuracy"] == 1.0 and metrics["num_tokens"] == 1.0
    loss, _ = losses.masked_cross_entropy(logits, labels, label_smoothing=0.2)  # target [0.1, 0.9]
    np.testing.assert_allclose(loss, -(0.1 * math.log(0.25) + 0.9 * math.log(0.75)), rtol=1e-6)


def test_cross_entropy_matches_optax_with_smoothing():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(3, 5, 11)) * 3, jnp.float32)
    labels = jnp.asarray(rng.integers(0, 11, size=(3, 5)))
    per_token = losses.token_cross_entropy(logits, labels, label_smoothing=0.1)
    expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(labels, 11), 0.1))
    np.testing.assert_allclose(per_token, expected, rtol=1e-5, atol=1e-6)


def test_cross_entropy_ignores_masked_positions():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(2, 4, 7)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 7, size=(2, 4)))
    mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    loss, metrics = losses.masked_cross_entropy(logits, labels, mask)
    real = np.asarray(mask)
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels)[real].mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert metrics["num_tokens"] == 4.0
    # Garbage at padded positions (huge logits, the -100 "ignore" label) changes nothing.
    noisy_logits = jnp.where(mask[..., None], logits, 1e4)
    noisy_labels = jnp.where(mask, labels, -100)
    noisy, noisy_metrics = losses.masked_cross_entropy(noisy_logits, noisy_labels, mask)
    np.testing.assert_allclose(noisy, loss, rtol=1e-6)
    np.testing.assert_allclose(noisy_metrics["accuracy"], metrics["accuracy"])
    grads = jax.grad(lambda x: losses.masked_cross_entropy(x, noisy_labels, mask)[0])(noisy_logits)
    assert np.all(np.asarray(grads)[~real] == 0) and np.isfinite(np.asarray(grads)).all()


def test_cross_entropy_with_no_real_tokens_is_zero_not_nan():
    logits = jnp.ones((2, 3, 5))
    labels = jnp.zeros((2, 3), jnp.int32)
    loss, metrics = losses.masked_cross_entropy(logits, labels, jnp.zeros((2, 3), bool))
    assert float(loss) == 0.0 and float(metrics["accuracy"]) == 0.0
    grads = jax.grad(lambda x: losses.masked_cross_entropy(x, labels, jnp.zeros((2, 3), bool))[0])(logits)
    assert np.isfinite(np.asarray(grads)).all()


def test_cross_entropy_bfloat16_is_computed_in_float32():
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.normal(size=(4, 6, 50)) * 4, jnp.float32)
    labels = jnp.asarray(rng.integers(0, 50, size=(4, 6)))
    loss16, _ = losses.masked_cross_entropy(logits.astype(jnp.bfloat16), labels)
    loss32, _ = losses.masked_cross_entropy(logits.astype(jnp.bfloat16).astype(jnp.float32), labels)
    assert loss16.dtype == jnp.float32
    np.testing.assert_allclose(loss16, loss32, rtol=1e-6)  # same values, so the math itself ran in float32


def test_cross_entropy_shape_errors():
    with pytest.raises(ValueError, match=r"labels \(2, 4\) do not match logits \(2, 3, 5\)"):
        losses.masked_cross_entropy(jnp.zeros((2, 3, 5)), jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"mask \(2,\) does not match labels \(2, 3\)"):
        losses.masked_cross_entropy(jnp.zeros((2, 3, 5)), jnp.zeros((2, 3), jnp.int32), jnp.ones((2,)))


# ------------------------------------------------------------------------------ soft-target sigmoid CE


def test_soft_sigmoid_cross_entropy_by_hand():
    loss, _ = losses.soft_sigmoid_cross_entropy(jnp.zeros((1, 1)), jnp.array([[0.3]]))
    np.testing.assert_allclose(loss, math.log(2.0), rtol=1e-6)

    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    targets = np.array([[1.0, 0.3, 0.0], [0.0, 0.6, 1.0]])
    per = -(targets * _log_sigmoid(logits) + (1 - targets) * _log_sigmoid(-logits))
    loss, metrics = losses.soft_sigmoid_cross_entropy(jnp.float32(logits), jnp.float32(targets))
    np.testing.assert_allclose(loss, per.sum(1).mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["vqa_score"], (1.0 + 0.6) / 2, rtol=1e-6)  # top answers: 0 and 1
    # Same reduction as PyTorch's BCEWithLogits(reduction='mean') * num_answers (LXMERT, VisualBERT).
    np.testing.assert_allclose(
        loss, optax.sigmoid_binary_cross_entropy(jnp.float32(logits), jnp.float32(targets)).mean() * 3, rtol=1e-6
    )

    masked, masked_metrics = losses.soft_sigmoid_cross_entropy(
        jnp.float32(logits), jnp.float32(targets), jnp.array([True, False])
    )
    np.testing.assert_allclose(masked, per[0].sum(), rtol=1e-6)
    np.testing.assert_allclose(masked_metrics["vqa_score"], 1.0)


def test_soft_sigmoid_cross_entropy_shape_error():
    with pytest.raises(ValueError, match=r"one \[B, A\] shape, got \(2, 3\) and \(2, 4\)"):
        losses.soft_sigmoid_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
