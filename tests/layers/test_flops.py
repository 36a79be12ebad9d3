"""Model FLOPs counted from a module's jaxpr: exact for the contractions a user can count by hand."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from mmjax.encoders import ViT
from mmjax.layers.flops import forward_flops, function_flops, training_flops


def test_dense_and_einsum_count_two_flops_per_multiply_add():
    x = jnp.zeros((4, 10, 32))
    assert forward_flops(nn.Dense(64), x) == 2 * 4 * 10 * 32 * 64
    assert function_flops(lambda a, b: jnp.einsum("bqd,bkd->bqk", a, b), x, x) == 2 * 4 * 10 * 10 * 32


def test_convolution_counts_its_window_and_groups():
    x = jnp.zeros((2, 8, 8, 6))
    conv = nn.Conv(12, (3, 3), padding="SAME", feature_group_count=3)
    assert forward_flops(conv, x) == 2 * (2 * 8 * 8 * 12) * (3 * 3 * 6 / 3)


def test_scanned_layers_count_once_per_layer_and_remat_is_not_counted():
    images = jnp.zeros((2, 32, 32, 3))
    kw = dict(width=64, depth=3, num_heads=2, mlp_dim=128, patch_size=8, image_size=32)
    plain = forward_flops(ViT(**kw), images)
    assert forward_flops(ViT(scan=True, **kw), images) == plain
    assert forward_flops(ViT(remat=True, **kw), images) == plain
    assert training_flops(ViT(**kw), images) == 3 * plain


def test_vit_b16_matches_the_hand_count():
    """Patch embedding, then per layer: q/k/v/out (4 d^2), the MLP (2 d 4d) per token, and attention's
    QK^T and AV (2 T^2 d each), at 2 flops per multiply-add: 35.1 GFLOP per 224 px image."""
    t, d = 197, 768
    patch = 2 * 196 * (16 * 16 * 3) * d
    layer = 2 * t * (4 * d * d + 2 * d * 4 * d) + 4 * t * t * d
    got = forward_flops(ViT.from_variant("B/16", image_size=224), jnp.zeros((1, 224, 224, 3)))
    assert got == pytest.approx(patch + 12 * layer, rel=1e-5)


def test_flops_do_not_depend_on_the_attention_kernel_chosen():
    images = jnp.zeros((2, 32, 32, 3))
    kw = dict(width=64, depth=2, num_heads=2, mlp_dim=128, patch_size=8, image_size=32, dtype=jnp.bfloat16)
    counts = {impl: forward_flops(ViT(attention_impl=impl, **kw), images) for impl in ("xla", "cudnn", None)}
    assert len(set(counts.values())) == 1, counts


def test_counting_allocates_nothing():
    # a 7B-parameter-sized matmul: traced abstractly, never materialized
    big = jax.ShapeDtypeStruct((65536, 65536), jnp.float32)
    assert function_flops(lambda a, b: a @ b, big, big) == 2 * 65536**3
