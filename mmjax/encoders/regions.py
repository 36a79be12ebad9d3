"""Visual tokens for single-stream models (VisualBERT): detector region features, or any image tower's tokens.

Region mode: features [B, R, D_v] from an external detector (e.g. Faster R-CNN's 2048-d pooled boxes), an
optional [B, R] validity mask and optional [B, R, 4] boxes. Grid mode (`image_tower` set): pixel_values go
through any mmjax image tower (ViT patches, ResNet feature map) and its Encoded.tokens become the region
features, so the whole model trains end to end without a detector.

Each visual token is  projection(features) + visual type embedding + visual position embedding (+ box
embedding), as in VisualBERT. Every visual token takes row 0 of the visual position table (regions have no
order), plus, with `image_text_alignment`, the mean of the *text* position embeddings of the words it is
aligned to (the original model's alignment for Flickr30k entities).

Parameter names (stable; converters depend on them): `projection` (kernel [D_v, D]), `type_embed`
(embedding [types, D]), `pos_embed` (embedding [max_length, D]), `box_embed` (kernel [7, D]) and `box_ln`
(only with use_boxes), `ln` (only with normalize), `image_tower` (grid mode).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.layers import (
    Encoded,
    PositionEmbed,
    TypeEmbed,
    dense,
    encoder_like,
    layer_norm,
    masked_mean,
    padding_mask,
)

Dtype = jnp.dtype | type


def _concrete(x) -> bool:
    # Value checks need concrete arrays; under jit only shapes can be checked.
    return x is not None and not isinstance(x, jax.core.Tracer)


def check_boxes(boxes, mask=None) -> None:
    """Boxes [B, R, 4] as (x1, y1, x2, y2) in [0, 1] with x1 <= x2, y1 <= y2, checked at real regions only.

    Raises ValueError naming the expected range and the offending values. Skipped under jit (abstract values).
    """
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [B, R, 4] (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    if not _concrete(boxes) or (mask is not None and not _concrete(mask)):
        return
    b = np.asarray(boxes, np.float32)
    real = np.ones(b.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    b = b[real]
    if b.size and (b.min() < 0.0 or b.max() > 1.0):
        raise ValueError(
            f"boxes must be normalized to [0, 1] by the image size, got values in [{b.min():.4g}, {b.max():.4g}]"
        )
    if b.size and (np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1])):
        raise ValueError("boxes must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2, got a box with x2 < x1 or y2 < y1")


def box_features(boxes, frequencies: int = 0) -> jax.Array:
    """[B, R, 4] (x1, y1, x2, y2) -> [B, R, 7 + 16F]: (x1, y1, x2, y2, w, h, area), UNITER's box input, with the
    corners moved to [-1, 1] (centred on the image: no constant offset shared by every box), then, for F > 0,
    sin and cos of pi * 2^k * (x1, y1, x2, y2, cx, cy, w, h) for k < F.

    Sinusoids make relative geometry a dot product away: cos(a - b) = cos a cos b + sin a sin b, so attention
    between two regions can score how close they are (as sinusoidal positions do for words)."""
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    out = [2 * boxes - 1, w[..., None], h[..., None], (w * h)[..., None]]
    if frequencies:
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        coords = jnp.concatenate([boxes, centre, w[..., None], h[..., None]], axis=-1)  # [B, R, 8]
        angles = (coords[..., None] * (jnp.pi * 2.0 ** jnp.arange(frequencies))).reshape(*coords.shape[:-1], -1)
        out += [jnp.sin(angles), jnp.cos(angles)]
    return jnp.concatenate(out, axis=-1)


def alignment_positions(alignment, text_table, num_regions: int) -> jax.Array:
    """Mean text position embedding of the words each region is aligned to.

    alignment: int [B, R', A], word positions per region, -1 for "no word" (R' >= R; extra rows are dropped,
    as the original code pads alignments longer than the regions). text_table: [P, D]. -> [B, R, D]; a region
    with no aligned word gets zeros.
    """
    if alignment.ndim != 3:
        raise ValueError(f"image_text_alignment must be [B, R, A], got shape {tuple(alignment.shape)}")
    if alignment.shape[1] < num_regions:
        raise ValueError(
            f"image_text_alignment covers {alignment.shape[1]} regions, expected at least {num_regions} (one "
            "row per visual token)"
        )
    # numpy, not jnp: inside a trace jnp would turn even a concrete array into a tracer
    top = int(np.max(np.asarray(alignment))) if _concrete(alignment) and alignment.size else -1
    if top >= text_table.shape[0]:
        raise ValueError(
            f"image_text_alignment holds position {top}, expected < {text_table.shape[0]} (the text position table)"
        )
    alignment = alignment[:, :num_regions]
    valid = (alignment != -1).astype(text_table.dtype)
    emb = jnp.take(text_table, jnp.maximum(alignment, 0), axis=0) * valid[..., None]
    return emb.sum(2) / jnp.maximum(valid.sum(2), 1.0)[..., None]


class RegionEmbeddings(nn.Module):
    """Region features or image-tower tokens -> Encoded(tokens [B, R, D], mask [B, R], pooled [B, D]).

    width:        D, the joint model's width.
    feature_dim:  D_v, the region feature width (Hugging Face's `visual_embedding_dim`); checked against the
                  input. In grid mode None takes the tower's width.
    max_length:   rows of the visual position table. The joint sequence (text + visual) must fit it: VisualBERT
                  sizes both position tables by the same `max_position_embeddings` budget.
    use_boxes:    add a learned, separately normalized embedding of the box geometry (`box_features`; an mmjax
                  extension: Hugging Face has no box input, so it is off for checkpoints converted from there).
    box_frequencies: F sinusoid octaves of the box coordinates added to that embedding's input (0 = none).
    image_tower:  grid mode: a module pixel_values -> Encoded whose tokens become the region features.
    normalize:    apply a LayerNorm (`ln`) to the tokens. Off for VisualBERT, which normalizes visual and text
                  embeddings with the one embedding LayerNorm of its text side; on to use this as a tower.
    """

    width: int
    feature_dim: int | None = None
    max_length: int = 512
    type_vocab_size: int = 2
    use_boxes: bool = False
    box_frequencies: int = 0
    image_tower: nn.Module | None = None
    normalize: bool = False
    layer_norm_eps: float = 1e-12
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        visual_embeds=None,
        visual_attention_mask=None,
        visual_token_type_ids=None,
        image_text_alignment=None,
        boxes=None,
        pixel_values=None,
        *,
        text_position_table=None,
        text_length: int = 0,
        train: bool = False,
    ) -> Encoded:
        """visual_embeds [B, R, D_v] (region mode) or pixel_values [B, H, W, C] / [B, I, H, W, C] (grid mode;
        I images per example give I * N tokens). visual_attention_mask [B, R] (1 = real region);
        visual_token_type_ids [B, R] (default 1, as Hugging Face); boxes [B, R, 4] in [0, 1];
        image_text_alignment [B, R, A] with text_position_table [P, D]; text_length: text tokens that share
        the sequence, for the length check.
        """
        features, mask = self._features(visual_embeds, visual_attention_mask, pixel_values, train)
        b, r, d_v = features.shape
        if self.feature_dim is not None and d_v != self.feature_dim:
            raise ValueError(
                f"region features must have width {self.feature_dim} (feature_dim / visual_embedding_dim), "
                f"got {d_v} (shape {tuple(features.shape)})"
            )
        if text_length + r > self.max_length:
            raise ValueError(
                f"{text_length} text + {r} visual tokens = {text_length + r} exceed the position table of "
                f"{self.max_length} positions"
            )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = dense(self.width, ("embed", "mlp"), name="projection", **kw)(features.astype(self.dtype))
        if visual_token_type_ids is None:
            visual_token_type_ids = jnp.ones((b, r), jnp.int32)
        _check_shape("visual_token_type_ids", visual_token_type_ids, (b, r))
        x = x + TypeEmbed(self.type_vocab_size, self.width, name="type_embed", **kw)(visual_token_type_ids)
        x = PositionEmbed(self.max_length, name="pos_embed", **kw)(x, position_ids=jnp.zeros((b, r), jnp.int32))
        if image_text_alignment is not None:
            if text_position_table is None:
                raise ValueError("image_text_alignment needs text_position_table (the text side's positions)")
            x = x + alignment_positions(image_text_alignment, jnp.asarray(text_position_table, self.dtype), r)
        if self.use_boxes:
            if boxes is None:
                raise ValueError("use_boxes=True needs boxes [B, R, 4]")
            _check_shape("boxes", boxes, (b, r, 4))
            check_boxes(boxes, mask)
            box = box_features(boxes.astype(self.dtype), self.box_frequencies)
            box = dense(self.width, (None, "mlp"), name="box_embed", **kw)(box)
            # Normalized on its own, as in UNITER: coordinates span a few hundredths, and summed raw with the
            # region features their differences (which is bigger, which is left) would be lost in the noise.
            x = x + layer_norm(self.layer_norm_eps, name="box_ln", **kw)(box)
        elif boxes is not None:
            raise ValueError("boxes were given but use_boxes=False; set use_boxes=True to embed them")
        if self.normalize:
            x = layer_norm(self.layer_norm_eps, name="ln", **kw)(x)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        return Encoded(tokens=x, mask=mask, pooled=masked_mean(x, mask))

    def _features(self, visual_embeds, visual_attention_mask, pixel_values, train):
        """-> (features [B, R, D_v], mask [B, R] bool) from region features or the image tower."""
        if self.image_tower is None:
            if visual_embeds is None or pixel_values is not None:
                raise ValueError("RegionEmbeddings without image_tower takes visual_embeds [B, R, D_v], not pixels")
            if visual_embeds.ndim != 3:
                raise ValueError(f"visual_embeds must be [B, R, D_v], got shape {tuple(visual_embeds.shape)}")
            features, mask = visual_embeds, jnp.ones(visual_embeds.shape[:2], bool)
        else:
            if pixel_values is None or visual_embeds is not None:
                raise ValueError("RegionEmbeddings with an image_tower takes pixel_values, not visual_embeds")
            features, mask = self._tower_tokens(pixel_values, train)
        if visual_attention_mask is not None:
            _check_shape("visual_attention_mask", visual_attention_mask, features.shape[:2])
            mask = jnp.logical_and(mask, visual_attention_mask.astype(bool))
        return features, mask

    def _tower_tokens(self, pixel_values, train):
        if pixel_values.ndim not in (4, 5):
            raise ValueError(f"pixel_values must be [B, H, W, C] or [B, I, H, W, C], got {tuple(pixel_values.shape)}")
        images = pixel_values.reshape(-1, *pixel_values.shape[-3:])
        enc = self.image_tower(images, train=train)
        b = pixel_values.shape[0]
        # Several images per example (NLVR2 pairs) become one longer visual sequence: [B * I, N, D] -> [B, I*N, D].
        return enc.tokens.reshape(b, -1, enc.tokens.shape[-1]), enc.mask.reshape(b, -1)


class RegionEncoder(nn.Module):
    """Detector regions as a tower of their own: visual_embeds [B, R, D_v] (+ visual_attention_mask [B, R],
    boxes [B, R, 4]) -> Encoded(tokens [B, R, width], mask [B, R], pooled = mean of the real regions).

    RegionEmbeddings (normalized) followed by `depth` pre-LN transformer layers over the regions, padded regions
    masked out. It is the image side's counterpart of a text tower for the fusion modules, whose late and
    mid/bottleneck variants need per-modality layers before the modalities meet (VisualBERT instead feeds the
    embeddings straight into its single stream).

    Parameter names (stable): `embeddings` (RegionEmbeddings with `ln`), `encoder` (layers.Encoder) and
    `ln_final`, both absent at depth 0.
    """

    width: int
    depth: int = 0
    num_heads: int = 4
    mlp_dim: int | None = None
    feature_dim: int | None = None
    max_regions: int = 100
    use_boxes: bool = True
    box_frequencies: int = 0
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    remat: bool = False
    scan: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, visual_embeds, visual_attention_mask=None, boxes=None, *, train: bool = False) -> Encoded:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        enc = RegionEmbeddings(
            self.width,
            self.feature_dim,
            max_length=self.max_regions,
            use_boxes=self.use_boxes,
            box_frequencies=self.box_frequencies,
            normalize=True,
            layer_norm_eps=self.layer_norm_eps,
            name="embeddings",
            **kw,
        )(visual_embeds, visual_attention_mask, boxes=boxes, train=train)
        x = nn.Dropout(self.dropout_rate)(enc.tokens, deterministic=not train)
        if self.depth:
            x = encoder_like(self, pre_norm=True, name="encoder")(x, padding_mask(enc.mask), not train)
            x = layer_norm(self.layer_norm_eps, name="ln_final", **kw)(x)
        return Encoded(tokens=x, mask=enc.mask, pooled=masked_mean(x, enc.mask))


def _check_shape(name, x, expected) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(x.shape)}")


def crop_regions(images, boxes, size: int = 8):
    """Detector-style region features without a detector: each box resampled to size x size pixels.

    images [B, H, W, C], boxes [B, R, 4] (x0, y0, x1, y1 in [0, 1]) -> [B, R, size * size * C], bilinear.
    With ground-truth boxes (the `shapes` dataset records them) this stands in for an object detector's
    per-region features, so VisualBERT's region path can be trained and compared with grid features.
    """
    b, h, w, c = images.shape
    steps = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size
    ys = boxes[..., 1:2] + steps * (boxes[..., 3:4] - boxes[..., 1:2])  # [B, R, s]
    xs = boxes[..., 0:1] + steps * (boxes[..., 2:3] - boxes[..., 0:1])
    rows = jnp.broadcast_to(ys[..., :, None] * h - 0.5, (*ys.shape, size))  # pixel centres, [B, R, s, s]
    cols = jnp.broadcast_to(xs[..., None, :] * w - 0.5, (*xs.shape[:-1], size, size))

    def one_image(image, r, q):
        sample = lambda channel: jax.scipy.ndimage.map_coordinates(channel, [r, q], order=1, mode="nearest")  # noqa: E731
        return jnp.stack([sample(image[..., k]) for k in range(c)], axis=-1)

    crops = jax.vmap(one_image)(images.astype(jnp.float32), rows, cols)
    return crops.reshape(b, boxes.shape[1], size * size * c)
