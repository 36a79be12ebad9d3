"""Hugging Face `TimesformerModel` and `TimesformerForVideoClassification` (attention_type='divided_space_time')
<-> mmjax DividedVideoViT and VideoClassifier(DividedVideoViT).

Inputs: transformers takes `pixel_values` [B, T, C, H, W]; mmjax takes videos NTHWC,
`videos = pixel_values.transpose(0, 1, 3, 4, 2)`.
Outputs: transformers orders the patch tokens (row, column, time), mmjax (time, row, column): after the class token,
`hf_tokens[:, 1:].reshape(B, h*w, T, D).transpose(0, 2, 1, 3).reshape(B, T*h*w, D)` equals mmjax's tokens[:, 1:].
The class token (and so the logits) needs no reordering.

Key layout (TimesformerModel; the classifier puts it under `timesformer.` and adds `classifier`):
  embeddings.{cls_token [1, 1, D], position_embeddings [1, 1 + h*w, D] (spatial, class row first),
  time_embeddings [1, T, D], patch_embeddings.projection (a Conv2d applied to every frame)},
  encoder.layer.{i}.{temporal_layernorm, temporal_attention.attention.qkv (q; k; v fused), temporal_attention
  .output.dense, temporal_dense, layernorm_before, attention.attention.qkv, attention.output.dense,
  layernorm_after, intermediate.dense, output.dense}, layernorm (every output token).
"""

from __future__ import annotations

import jax.numpy as jnp

from mmjax.convert.hf_common import (
    HFConverter,
    activation_from_hf,
    activation_to_hf,
    encoder_fields,
    example_videos,
    label_maps,
    refuse_unless,
    require,
    split_overrides,
)
from mmjax.convert.mapping import (
    CONV_FRAME,
    HEADS_BIAS,
    HEADS_IN,
    HEADS_OUT,
    LEADING_ONE,
    Rule,
    layer_norm_rules,
    linear_rules,
)
from mmjax.encoders.video import DividedVideoViT
from mmjax.models.video_classifier import VideoClassifier


def _attention_rules(hf: str, mm: str) -> list[Rule]:
    """`{hf}.attention.qkv` (q; k; v stacked along the output axis) and `{hf}.output.dense` <-> MultiHeadAttention."""
    rules = []
    for i, name in enumerate(("query", "key", "value")):
        rules += [
            Rule(f"{hf}.attention.qkv.weight", f"{mm}/{name}/kernel", HEADS_IN, part=(i, 3)),
            Rule(f"{hf}.attention.qkv.bias", f"{mm}/{name}/bias", HEADS_BIAS, part=(i, 3)),
        ]
    return rules + [
        Rule(f"{hf}.output.dense.weight", f"{mm}/out/kernel", HEADS_OUT),
        Rule(f"{hf}.output.dense.bias", f"{mm}/out/bias"),
    ]


def layer_rules(hf: str, mm: str) -> list[Rule]:
    """One TimeSformer layer `{hf}` <-> encoders.video.DividedBlock at `{mm}`."""
    return [
        *layer_norm_rules(f"{hf}.temporal_layernorm", f"{mm}/ln_time"),
        *_attention_rules(f"{hf}.temporal_attention", f"{mm}/temporal_attn"),
        *linear_rules(f"{hf}.temporal_dense", f"{mm}/temporal_out"),
        *layer_norm_rules(f"{hf}.layernorm_before", f"{mm}/ln_1"),
        *_attention_rules(f"{hf}.attention", f"{mm}/attn"),
        *layer_norm_rules(f"{hf}.layernorm_after", f"{mm}/ln_2"),
        *linear_rules(f"{hf}.intermediate.dense", f"{mm}/mlp/fc1"),
        *linear_rules(f"{hf}.output.dense", f"{mm}/mlp/fc2"),
    ]


def tower_rules(vit: DividedVideoViT, hf: str = "", mm: str = "") -> list[Rule]:
    """TimesformerModel keys under prefix `hf` ('' or 'timesformer.') <-> a DividedVideoViT at `mm`."""
    e = f"{hf}embeddings"
    return [
        Rule(f"{e}.cls_token", f"{mm}cls_token", LEADING_ONE),
        Rule(f"{e}.position_embeddings", f"{mm}pos_embedding", LEADING_ONE),
        Rule(f"{e}.time_embeddings", f"{mm}time_embedding", LEADING_ONE),
        Rule(f"{e}.patch_embeddings.projection.weight", f"{mm}embedding/conv/kernel", CONV_FRAME),
        Rule(f"{e}.patch_embeddings.projection.bias", f"{mm}embedding/conv/bias"),
        *[r for i in range(vit.depth) for r in layer_rules(f"{hf}encoder.layer.{i}", f"{mm}encoder/layer_{i}")],
        *layer_norm_rules(f"{hf}layernorm", f"{mm}ln_post"),
    ]


def classifier_rules(model: VideoClassifier) -> list[Rule]:
    return [*tower_rules(model.tower, "timesformer.", "tower/"), *linear_rules("classifier", "head")]


def tower_fields(config: dict) -> dict:
    """TimesformerConfig dict -> DividedVideoViT fields computing what TimesformerModel does."""
    where = "TimesformerConfig"
    image_size, patch_size = require(config, "image_size", where), require(config, "patch_size", where)
    if not isinstance(image_size, int) or not isinstance(patch_size, int):
        raise ValueError(f"only square frames and patches are supported, got {image_size=} {patch_size=}")
    if config.get("attention_type", "divided_space_time") != "divided_space_time":
        raise ValueError(f"TimesformerConfig.attention_type={config['attention_type']!r}: only divided_space_time")
    if not config.get("qkv_bias", True):
        raise ValueError("TimesformerConfig.qkv_bias=False is not supported")
    return dict(
        width=require(config, "hidden_size", where),
        depth=require(config, "num_hidden_layers", where),
        num_heads=require(config, "num_attention_heads", where),
        mlp_dim=require(config, "intermediate_size", where),
        patch_size=patch_size,
        tubelet_size=1,
        image_size=image_size,
        num_frames=config.get("num_frames", 8),
        channels=config.get("num_channels", 3),
        pooling="tok",
        posemb="learn",
        final_norm="all",
        activation=activation_from_hf(config.get("hidden_act", "gelu"), where),
        layer_norm_eps=config.get("layer_norm_eps", 1e-6),
        attention_dropout_rate=config.get("attention_probs_dropout_prob", 0.0),
    )


def build_tower(config: dict, dtype, param_dtype, overrides: dict) -> DividedVideoViT:
    routed = split_overrides(overrides, {"": DividedVideoViT})
    return DividedVideoViT(**{**tower_fields(config), "dtype": dtype, "param_dtype": param_dtype, **routed[""]})


def build_classifier(config: dict, dtype, param_dtype, overrides: dict) -> VideoClassifier:
    routed = split_overrides(overrides, {"": VideoClassifier, "tower": DividedVideoViT})
    common = dict(dtype=dtype, param_dtype=param_dtype)
    num_classes = config.get("num_labels") or len(config.get("id2label") or {})
    if not num_classes:
        raise ValueError("TimesformerForVideoClassification config has no labels (id2label / num_labels)")
    tower = DividedVideoViT(**{**tower_fields(config), **common, **routed["tower"]})
    return VideoClassifier(tower=tower, num_classes=num_classes, **{**common, **routed[""]})


def tower_config(vit) -> dict:
    refuse_unless(type(vit) is DividedVideoViT, "VideoClassifier", "tower", type(vit).__name__, "TimeSformer")
    for field, want, why in (
        ("tubelet_size", 1, "TimeSformer embeds every frame with a Conv2d"),
        ("pooling", "tok", "TimeSformer has a class token"),
        ("final_norm", "all", "TimeSformer normalizes every output token"),
        ("key_bias", True, "the fused qkv projection has a bias"),
        ("patch_bias", True, "the Conv2d has a bias"),
        ("pre_norm", False, "TimeSformer has no norm before the encoder"),
    ):
        refuse_unless(
            getattr(vit, field) == want, "DividedVideoViT", field, getattr(vit, field), f"needs {want!r}: {why}"
        )
    return {
        "model_type": "timesformer",
        **encoder_fields(vit, activation_to_hf(vit.activation, "DividedVideoViT")),
        "attention_probs_dropout_prob": vit.attention_dropout_rate,
        "num_channels": vit.channels,
        "image_size": vit.image_size,
        "patch_size": vit.patch_size,
        "num_frames": vit.num_frames,
        "attention_type": "divided_space_time",
        "qkv_bias": True,
        "dtype": str(jnp.dtype(vit.param_dtype)),
    }


def export_tower(vit: DividedVideoViT) -> dict:
    return {"architectures": ["TimesformerModel"], **tower_config(vit)}


def export_classifier(model: VideoClassifier) -> dict:
    return {
        "architectures": ["TimesformerForVideoClassification"],
        **tower_config(model.tower),
        **label_maps(model.num_classes),
    }


CONVERTERS = (
    HFConverter(
        architecture="TimesformerModel",
        model_type="timesformer",
        model_class=DividedVideoViT,
        build_model=build_tower,
        export_config=export_tower,
        rules=tower_rules,
        example_inputs=lambda vit: {"videos": example_videos(vit)},
    ),
    HFConverter(
        architecture="TimesformerForVideoClassification",
        model_type="timesformer",
        model_class=VideoClassifier,
        build_model=build_classifier,
        export_config=export_classifier,
        rules=classifier_rules,
        example_inputs=lambda model: {"videos": example_videos(model.tower)},
        exports=lambda model: type(model.tower) is DividedVideoViT,
    ),
)
