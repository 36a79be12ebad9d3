"""Hugging Face `VideoMAEModel` and `VideoMAEForVideoClassification` <-> mmjax VideoViT and
VideoClassifier(VideoViT).

Inputs: transformers takes `pixel_values` [B, T, C, H, W]; mmjax takes videos NTHWC [B, T, H, W, C], i.e.
`videos = pixel_values.transpose(0, 1, 3, 4, 2)` (the same normalized values, channels moved last).

Key layout (VideoMAEModel; the classifier puts it under `videomae.` and adds `fc_norm`, `classifier`):
  embeddings.patch_embeddings.projection.{weight [D, C, t, p, p], bias} (a Conv3d with kernel = stride),
  encoder.layer.{i}.attention.attention.{query,key,value}.weight, query.bias, value.bias (no key bias),
  encoder.layer.{i}.attention.output.dense, .layernorm_before, .layernorm_after, .intermediate.dense,
  .output.dense (a pre-LN block), and `layernorm` only when use_mean_pooling is false.
Checkpoints written before transformers 4.4x name the biases `attention.attention.q_bias` / `v_bias`.

Semantics that must match exactly: positions are a fixed 1-D sinusoid over the flattened (time, row, column)
tubelets, not weights (VideoViT posemb='sincos'); there is no class token; last_hidden_state is the encoder
output, normalized by `layernorm` only without mean pooling; the classifier averages the tokens and normalizes
with `fc_norm`, a LayerNorm built without the config's eps (torch's 1e-5).
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
from mmjax.convert.mapping import CONV3D, HEADS_BIAS, HEADS_IN, HEADS_OUT, Rule, layer_norm_rules, linear_rules
from mmjax.encoders.video import VideoViT
from mmjax.models.video_classifier import VideoClassifier

# torch's LayerNorm default, which VideoMAEForVideoClassification's fc_norm keeps whatever the config says.
FC_NORM_EPS = 1e-5


def layer_rules(hf: str, mm: str) -> list[Rule]:
    """One VideoMAE layer `{hf}` <-> layers.Block (pre-LN, key_bias=False) at `{mm}`."""
    a = f"{hf}.attention.attention"
    return [
        *layer_norm_rules(f"{hf}.layernorm_before", f"{mm}/ln_1"),
        Rule(f"{a}.query.weight", f"{mm}/attn/query/kernel", HEADS_IN),
        Rule(f"{a}.query.bias", f"{mm}/attn/query/bias", HEADS_BIAS),
        Rule(f"{a}.key.weight", f"{mm}/attn/key/kernel", HEADS_IN),
        Rule(f"{a}.value.weight", f"{mm}/attn/value/kernel", HEADS_IN),
        Rule(f"{a}.value.bias", f"{mm}/attn/value/bias", HEADS_BIAS),
        Rule(f"{hf}.attention.output.dense.weight", f"{mm}/attn/out/kernel", HEADS_OUT),
        Rule(f"{hf}.attention.output.dense.bias", f"{mm}/attn/out/bias"),
        *layer_norm_rules(f"{hf}.layernorm_after", f"{mm}/ln_2"),
        *linear_rules(f"{hf}.intermediate.dense", f"{mm}/mlp/fc1"),
        *linear_rules(f"{hf}.output.dense", f"{mm}/mlp/fc2"),
    ]


def tower_rules(vit: VideoViT, hf: str = "", mm: str = "") -> list[Rule]:
    """VideoMAEModel keys under prefix `hf` ('' or 'videomae.') <-> a VideoViT at `mm` ('' or 'tower/')."""
    rules = [
        Rule(f"{hf}embeddings.patch_embeddings.projection.weight", f"{mm}embedding/conv/kernel", CONV3D),
        Rule(f"{hf}embeddings.patch_embeddings.projection.bias", f"{mm}embedding/conv/bias"),
        *[r for i in range(vit.depth) for r in layer_rules(f"{hf}encoder.layer.{i}", f"{mm}encoder/layer_{i}")],
    ]
    if vit.final_norm == "all":
        rules += layer_norm_rules(f"{hf}layernorm", f"{mm}ln_post")
    return rules


def classifier_rules(model: VideoClassifier) -> list[Rule]:
    return [
        *tower_rules(model.tower, "videomae.", "tower/"),
        *layer_norm_rules("fc_norm", "tower/ln_post"),
        *linear_rules("classifier", "head"),
    ]


def tower_fields(config: dict, *, classifier: bool) -> dict:
    """VideoMAEConfig dict -> VideoViT fields computing what VideoMAEModel (or the classifier's tower) does."""
    where = "VideoMAEConfig"
    image_size, patch_size = require(config, "image_size", where), require(config, "patch_size", where)
    if not isinstance(image_size, int) or not isinstance(patch_size, int):
        raise ValueError(f"only square frames and patches are supported, got {image_size=} {patch_size=}")
    # `qkv_bias` is the name configs written before transformers renamed it to `qv_bias` use.
    if not config.get("qv_bias", config.get("qkv_bias", True)):
        raise ValueError("VideoMAEConfig.qv_bias=False (no attention biases) is not supported")
    mean_pooling = config.get("use_mean_pooling", True)
    if classifier and not mean_pooling:
        raise ValueError("VideoMAEForVideoClassification with use_mean_pooling=False (token 0) is not supported")
    return dict(
        width=require(config, "hidden_size", where),
        depth=require(config, "num_hidden_layers", where),
        num_heads=require(config, "num_attention_heads", where),
        mlp_dim=require(config, "intermediate_size", where),
        patch_size=patch_size,
        tubelet_size=config.get("tubelet_size", 2),
        image_size=image_size,
        num_frames=config.get("num_frames", 16),
        channels=config.get("num_channels", 3),
        pooling="gap",
        posemb="sincos",
        final_norm="pooled" if classifier else ("none" if mean_pooling else "all"),
        post_norm_eps=FC_NORM_EPS if classifier else None,
        key_bias=False,
        activation=activation_from_hf(config.get("hidden_act", "gelu"), where),
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        attention_dropout_rate=config.get("attention_probs_dropout_prob", 0.0),
    )


def build_tower(config: dict, dtype, param_dtype, overrides: dict) -> VideoViT:
    routed = split_overrides(overrides, {"": VideoViT})
    return VideoViT(
        **{**tower_fields(config, classifier=False), "dtype": dtype, "param_dtype": param_dtype, **routed[""]}
    )


def build_classifier(config: dict, dtype, param_dtype, overrides: dict) -> VideoClassifier:
    routed = split_overrides(overrides, {"": VideoClassifier, "tower": VideoViT})
    common = dict(dtype=dtype, param_dtype=param_dtype)
    labels = config.get("id2label") or {}
    num_classes = config.get("num_labels", len(labels)) or len(labels)
    if not num_classes:
        raise ValueError("VideoMAEForVideoClassification config has no labels (id2label / num_labels)")
    tower = VideoViT(**{**tower_fields(config, classifier=True), **common, **routed["tower"]})
    return VideoClassifier(tower=tower, num_classes=num_classes, **{**common, **routed[""]})


def _check_tower(vit, final_norms) -> None:
    refuse_unless(type(vit) is VideoViT, "VideoClassifier", "tower", type(vit).__name__, "VideoMAE is a VideoViT")
    for field, want, why in (
        ("posemb", "sincos", "VideoMAE's positions are a fixed sinusoid"),
        ("pooling", "gap", "VideoMAE has no class token"),
        ("key_bias", False, "VideoMAE's key projection has no bias"),
        ("patch_bias", True, "the Conv3d has a bias"),
        ("pre_norm", False, "VideoMAE has no norm before the encoder"),
    ):
        refuse_unless(getattr(vit, field) == want, "VideoViT", field, getattr(vit, field), f"needs {want!r}: {why}")
    refuse_unless(vit.final_norm in final_norms, "VideoViT", "final_norm", vit.final_norm, f"needs {final_norms}")


def tower_config(vit: VideoViT, mean_pooling: bool) -> dict:
    return {
        "model_type": "videomae",
        **encoder_fields(vit, activation_to_hf(vit.activation, "VideoViT")),
        "attention_probs_dropout_prob": vit.attention_dropout_rate,
        "num_channels": vit.channels,
        "image_size": vit.image_size,
        "patch_size": vit.patch_size,
        "num_frames": vit.num_frames,
        "tubelet_size": vit.tubelet_size,
        "qv_bias": True,
        "use_mean_pooling": mean_pooling,
        "dtype": str(jnp.dtype(vit.param_dtype)),
    }


def export_tower(vit: VideoViT) -> dict:
    _check_tower(vit, ("none", "all"))
    return {"architectures": ["VideoMAEModel"], **tower_config(vit, mean_pooling=vit.final_norm == "none")}


def export_classifier(model: VideoClassifier) -> dict:
    vit = model.tower
    _check_tower(vit, ("pooled",))
    eps = vit.post_norm_eps
    refuse_unless(eps == FC_NORM_EPS, "VideoViT", "post_norm_eps", eps, "fc_norm's eps is fixed at 1e-5")
    return {
        "architectures": ["VideoMAEForVideoClassification"],
        **tower_config(vit, mean_pooling=True),
        **label_maps(model.num_classes),
    }


def normalize_key(key: str) -> str:
    """Older checkpoints' `q_bias` / `v_bias` -> the `query.bias` / `value.bias` names used now."""
    return key.replace(".attention.attention.q_bias", ".attention.attention.query.bias").replace(
        ".attention.attention.v_bias", ".attention.attention.value.bias"
    )


def _is_videomae(vit) -> bool:
    return isinstance(vit, VideoViT) and vit.posemb == "sincos"


CONVERTERS = (
    HFConverter(
        architecture="VideoMAEModel",
        model_type="videomae",
        model_class=VideoViT,
        build_model=build_tower,
        export_config=export_tower,
        rules=tower_rules,
        example_inputs=lambda vit: {"videos": example_videos(vit)},
        normalize_key=lambda key: normalize_key(key).removeprefix("videomae."),
        exports=_is_videomae,
    ),
    HFConverter(
        architecture="VideoMAEForVideoClassification",
        model_type="videomae",
        model_class=VideoClassifier,
        build_model=build_classifier,
        export_config=export_classifier,
        rules=classifier_rules,
        example_inputs=lambda model: {"videos": example_videos(model.tower)},
        normalize_key=normalize_key,
        exports=lambda model: _is_videomae(model.tower),
    ),
)
