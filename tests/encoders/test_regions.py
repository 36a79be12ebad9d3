"""RegionEmbeddings: region and grid modes, boxes, text alignment, and the errors bad inputs raise."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import ViT, build_tower
from mmjax.encoders.regions import RegionEmbeddings, alignment_positions, box_features
from mmjax.encoders.resnet import ResNet

B, R, DV, D, P = 2, 5, 12, 16, 16


def regions(seed=0, r=R, dv=DV):
    return jax.random.normal(jax.random.key(seed), (B, r, dv))


def random_params(module, seed=0, **inputs):
    """Parameters from normal(0, 0.2) in the shapes init would make. jax.eval_shape + numpy: compiling the
    threefry random init costs far more than these tests."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), **inputs))["params"]
    leaves, treedef = jax.tree.flatten(nn.meta.unbox(shapes))
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [rng.normal(0.0, 0.2, x.shape).astype(np.float32) for x in leaves])


def run(module, **inputs):
    """(Encoded, params). Applied eagerly, so value checks (boxes, alignment) see concrete arrays."""
    params = random_params(module, **inputs)
    return module.apply({"params": params}, **inputs), params


def test_region_tokens_are_projection_plus_type_and_position_zero():
    vmask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    types = jnp.array([[0, 1, 0, 1, 0], [1, 1, 1, 1, 1]])
    feats = regions()
    enc, p = run(RegionEmbeddings(D, DV, max_length=P), visual_embeds=feats, visual_attention_mask=vmask,
                 visual_token_type_ids=types)  # fmt: skip
    want = feats @ p["projection"]["kernel"] + p["projection"]["bias"]
    want = want + p["type_embed"]["embedding"][types] + p["pos_embed"]["embedding"][0]
    np.testing.assert_allclose(enc.tokens, want, atol=1e-5)
    np.testing.assert_array_equal(enc.mask, vmask.astype(bool))
    np.testing.assert_allclose(enc.pooled[0], want[0, :3].mean(0), atol=1e-5)  # padded regions excluded
    default, _ = run(RegionEmbeddings(D, DV, max_length=P), visual_embeds=feats)
    ones, _ = run(
        RegionEmbeddings(D, DV, max_length=P), visual_embeds=feats, visual_token_type_ids=jnp.ones((B, R), int)
    )
    np.testing.assert_array_equal(default.tokens, ones.tokens)  # Hugging Face's default visual type is 1


def test_wrong_feature_width_names_expected_and_got():
    with pytest.raises(ValueError, match=r"width 12 .*got 10 \(shape \(2, 5, 10\)\)"):
        run(RegionEmbeddings(D, DV, max_length=P), visual_embeds=regions(dv=10))
    with pytest.raises(ValueError, match=r"visual_attention_mask must have shape \(2, 5\), got \(2, 4\)"):
        run(RegionEmbeddings(D, DV, max_length=P), visual_embeds=regions(), visual_attention_mask=jnp.ones((B, 4)))


def test_too_many_tokens_for_the_position_table():
    module = RegionEmbeddings(D, DV, max_length=P)
    random_params(module, visual_embeds=regions(r=6), text_length=10)  # 16 = the table: fits (shapes only)
    with pytest.raises(ValueError, match=r"10 text \+ 7 visual tokens = 17 exceed the position table of 16"):
        random_params(module, visual_embeds=regions(r=7), text_length=10)


def boxes_like(seed=1):
    xy = jax.random.uniform(jax.random.key(seed), (B, R, 2), maxval=0.5)
    return jnp.concatenate([xy, xy + 0.4], axis=-1)


def test_boxes_embed_position_and_are_validated():
    module = RegionEmbeddings(D, DV, max_length=P, use_boxes=True)
    feats, boxes = regions(), boxes_like()
    enc, p = run(module, visual_embeds=feats, boxes=boxes)
    moved, _ = run(module, visual_embeds=feats, boxes=boxes.at[0, 0].set(jnp.array([0.0, 0.0, 1.0, 1.0])))
    assert not np.allclose(enc.tokens[0, 0], moved.tokens[0, 0])  # the box is part of the token
    np.testing.assert_array_equal(enc.tokens[1], moved.tokens[1])
    assert p["box_embed"]["kernel"].shape == (7, D)  # x1, y1, x2, y2, w, h, area
    # The box embedding is normalized on its own (UNITER): a box of a few hundredths of the image weighs as much
    # as the region's features, rather than being lost beside them.
    box = box_features(boxes)
    assert box.shape == (B, R, 7)
    np.testing.assert_allclose(box[..., :4], 2 * boxes - 1, atol=1e-6)
    np.testing.assert_allclose(box[..., 6], box[..., 4] * box[..., 5], atol=1e-6)
    assert "box_ln" in p
    sines = box_features(boxes, frequencies=3)
    assert sines.shape == (B, R, 7 + 2 * 8 * 3)
    centre_x = (boxes[..., 0] + boxes[..., 2]) / 2
    np.testing.assert_allclose(sines[..., 7 + 4 * 3 + 2], np.sin(4 * np.pi * centre_x), atol=1e-5)  # cx, k=2
    np.testing.assert_allclose(sines[..., 7 + 24 + 4 * 3 + 2], np.cos(4 * np.pi * centre_x), atol=1e-5)

    with pytest.raises(ValueError, match=r"\[0, 1\].*got values in \[-0\.5, "):
        run(module, visual_embeds=feats, boxes=boxes.at[1, 2, 0].set(-0.5))
    with pytest.raises(ValueError, match=r"\[0, 1\].*got values in \[.*, 2\]"):
        run(module, visual_embeds=feats, boxes=boxes.at[0, 1, 3].set(2.0))
    with pytest.raises(ValueError, match="x1 <= x2"):
        run(module, visual_embeds=feats, boxes=boxes.at[0, 1].set(jnp.array([0.6, 0.1, 0.2, 0.3])))
    # Padded regions may hold anything: only real regions are checked.
    vmask = jnp.ones((B, R)).at[1, 2].set(0)
    run(module, visual_embeds=feats, boxes=boxes.at[1, 2].set(-1.0), visual_attention_mask=vmask)
    with pytest.raises(ValueError, match=r"boxes must have shape \(2, 5, 4\), got \(2, 5, 5\)"):
        run(module, visual_embeds=feats, boxes=jnp.zeros((B, R, 5)))
    with pytest.raises(ValueError, match="use_boxes=True needs boxes"):
        run(module, visual_embeds=feats)
    with pytest.raises(ValueError, match="use_boxes=False"):
        run(RegionEmbeddings(D, DV, max_length=P), visual_embeds=feats, boxes=boxes)


def test_image_text_alignment_adds_mean_text_position():
    table = jax.random.normal(jax.random.key(3), (P, D))
    align = jnp.full((B, R + 1, 3), -1).at[0, 0].set(jnp.array([2, 5, -1])).at[1, 4].set(jnp.array([7, 7, 7]))
    module = RegionEmbeddings(D, DV, max_length=P)
    plain, _ = run(module, visual_embeds=regions())
    aligned, _ = run(module, visual_embeds=regions(), image_text_alignment=align, text_position_table=table)
    extra = np.array(aligned.tokens - plain.tokens)
    np.testing.assert_allclose(extra[0, 0], (table[2] + table[5]) / 2, atol=1e-5)
    np.testing.assert_allclose(extra[1, 4], table[7], atol=1e-5)
    extra[0, 0] = extra[1, 4] = 0.0
    np.testing.assert_allclose(extra, 0.0, atol=1e-6)  # regions aligned to no word are unchanged

    with pytest.raises(ValueError, match=r"covers 4 regions, expected at least 5"):
        alignment_positions(align[:, :4], table, R)
    with pytest.raises(ValueError, match=r"holds position 16, expected < 16"):
        alignment_positions(align.at[0, 0, 0].set(16), table, R)
    with pytest.raises(ValueError, match="needs text_position_table"):
        run(module, visual_embeds=regions(), image_text_alignment=align)


def test_grid_mode_turns_vit_patches_into_visual_tokens():
    vit = ViT(width=8, depth=1, num_heads=2, patch_size=4, image_size=8)
    module = RegionEmbeddings(D, max_length=P, image_tower=vit)
    pixels = jax.random.uniform(jax.random.key(0), (B, 2, 8, 8, 3))  # two images per example
    params = random_params(module, pixel_values=pixels)
    run_grid = jax.jit(lambda x: module.apply({"params": params}, pixel_values=x))  # one compilation for both
    pair, swapped = run_grid(pixels), run_grid(pixels[:, ::-1])
    assert pair.tokens.shape == (B, 2 * 5, D) and pair.mask.shape == (B, 10)  # (class token + 4 patches) x 2
    np.testing.assert_allclose(pair.tokens[:, :5], swapped.tokens[:, 5:], atol=1e-5)  # image i -> block i
    np.testing.assert_allclose(pair.tokens[:, 5:], swapped.tokens[:, :5], atol=1e-5)
    assert not np.allclose(pair.tokens[:, :5], pair.tokens[:, 5:])
    assert params["projection"]["kernel"].shape == (8, D)  # feature width = the tower's width
    assert "image_tower" in params

    with pytest.raises(ValueError, match="takes pixel_values, not visual_embeds"):
        module.apply({"params": params}, visual_embeds=regions())
    with pytest.raises(ValueError, match="takes visual_embeds"):
        RegionEmbeddings(D, DV).init(jax.random.key(0), pixel_values=pixels)


def test_grid_mode_takes_resnet_feature_maps():
    resnet = ResNet(depth=18, width=8)
    module = RegionEmbeddings(D, max_length=P, image_tower=resnet)
    shapes = jax.eval_shape(
        lambda x: module.apply(module.init(jax.random.key(0), pixel_values=x), pixel_values=x),
        jnp.zeros((B, 64, 64, 3)),
    )
    assert shapes.tokens.shape == (B, 4, D)  # a 2x2 feature map after the /32 stride


def test_normalize_makes_a_standalone_tower():
    module = RegionEmbeddings(D, DV, max_length=P, normalize=True)
    enc, p = run(module, visual_embeds=regions())
    plain = RegionEmbeddings(D, DV, max_length=P).apply({"params": {k: v for k, v in p.items() if k != "ln"}},
                                                          visual_embeds=regions())  # fmt: skip
    x = np.asarray(plain.tokens)
    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(enc.tokens, normed * p["ln"]["scale"] + p["ln"]["bias"], atol=1e-4)


def test_region_encoder_is_a_tower_whose_padded_regions_change_nothing():
    """The `regions` tower: what a real region becomes and the pooled mean ignore padded regions entirely."""
    module = build_tower("regions", width=D, depth=2, num_heads=2, feature_dim=DV, box_frequencies=2)
    boxes = jnp.tile(jnp.array([0.1, 0.2, 0.4, 0.6]), (B, R, 1))
    vmask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    enc, p = run(module, visual_embeds=regions(), visual_attention_mask=vmask, boxes=boxes)
    assert enc.tokens.shape == (B, R, D)
    assert set(p) == {"embeddings", "encoder", "ln_final"}
    np.testing.assert_array_equal(enc.mask, vmask.astype(bool))
    # Garbage in the padded slots of example 0 must not reach its real regions.
    noisy = regions().at[0, 3:].set(100.0)
    again = module.apply({"params": p}, visual_embeds=noisy, visual_attention_mask=vmask, boxes=boxes)
    np.testing.assert_allclose(again.tokens[0, :3], enc.tokens[0, :3], atol=1e-5)
    np.testing.assert_allclose(enc.pooled[0], enc.tokens[0, :3].mean(0), atol=1e-5)
    # The same three regions alone give the same tokens: padding is invisible.
    alone = module.apply({"params": p}, visual_embeds=regions()[:1, :3], boxes=boxes[:1, :3])
    np.testing.assert_allclose(alone.tokens[0], enc.tokens[0, :3], atol=1e-5)


def test_region_encoder_at_depth_zero_is_the_normalized_embeddings():
    module = build_tower("regions", width=D, feature_dim=DV)
    boxes = jnp.tile(jnp.array([0.1, 0.2, 0.4, 0.6]), (B, R, 1))
    enc, p = run(module, visual_embeds=regions(), boxes=boxes)
    assert set(p) == {"embeddings"}
    embeddings = RegionEmbeddings(D, DV, max_length=100, use_boxes=True, normalize=True, layer_norm_eps=1e-6)
    want = embeddings.apply({"params": p["embeddings"]}, visual_embeds=regions(), boxes=boxes)
    np.testing.assert_allclose(enc.tokens, want.tokens, atol=1e-6)
    with pytest.raises(ValueError, match="region features must have width 12"):
        module.apply({"params": p}, visual_embeds=regions(dv=10), boxes=jnp.zeros((B, R, 4)))
