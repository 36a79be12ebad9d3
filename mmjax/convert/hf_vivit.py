"""Hugging Face `VivitModel` and `VivitForVideoClassification` <-> mmjax VideoViT and VideoClassifier(VideoViT).

ViViT's model 1 (joint space-time attention) as transformers implements it. Inputs: transformers takes
`pixel_values` [B, T, C, H, W]; mmjax takes videos NTHWC, `videos = pixel_values.transpose(0, 1, 3, 4, 2)`.

Key layout (VivitModel; the classifier puts it under `vivit.`, has no pooler, and adds `classifier`):
  embeddings.cls_token [1, 1, D], embeddings.position_embeddings [1, 1 + T' h w, D] (one learned table over the
  class token and the flattened (time, row, column) tubelets), embeddings.patch_embeddings.projection (Conv3d,
  kernel = stride = config.tubelet_size = [t, p, p]), encoder.layer.{i}.attention.attention.{query,key,value},
  .attention.output.dense, .layernorm_before, .layernorm_after, .intermediate.dense, .output.dense (pre-LN),
  layernorm (applied to every token: last_hidden_state is normalized), pooler.dense (tanh over token 0).
The classifier reads the normalized class token.
"""

from __future__ import annotations

import re

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
from mmjax.convert.mapping import CONV3D, LEADING_ONE, Rule, attention_rules, layer_norm_rules, linear_rules
from mmjax.encoders.video import VideoViT
from mmjax.models.video_classifier import VideoClassifier


def layer_rules(hf: str, mm: str) -> list[Rule]:
    """One ViViT layer `{hf}` <-> layers.Block (pre-LN) at `{mm}`."""
    a = f"{hf}.attention.attention"
    return [
        *layer_norm_rules(f"{hf}.layernorm_before", f"{mm}/ln_1"),
        *attention_rules(f"{a}.query", f"{a}.key", f"{a}.value", f"{hf}.attention.output.dense", f"{mm}/attn"),
        *layer_norm_rules(f"{hf}.layernorm_after", f"{mm}/ln_2"),
        *linear_rules(f"{hf}.intermediate.dense", f"{mm}/mlp/fc1"),
        *linear_rules(f"{hf}.output.dense", f"{mm}/mlp/fc2"),
    ]


# transformers 5 names the modules `layers.{i}.attention.q_proj`, `.mlp.fc1`, ... in memory but writes (and reads)
# the older file layout above; a state dict saved from memory (torch.save, safetensors by hand) is renamed here.
_IN_MEMORY = (
    (re.compile(r"(^|\.)layers\.(\d+)\."), r"\1encoder.layer.\2."),
    (re.compile(r"\.attention\.([qkv])_proj\."), None),
    (re.compile(r"\.attention\.o_proj\."), ".attention.output.dense."),
    (re.compile(r"\.mlp\.fc1\."), ".intermediate.dense."),
    (re.compile(r"\.mlp\.fc2\."), ".output.dense."),
)
_QKV = {"q": "query", "k": "key", "v": "value"}


def normalize_key(key: str) -> str:
    for pattern, repl in _IN_MEMORY:
        if repl is None:
            key = pattern.sub(lambda m: f".attention.attention.{_QKV[m.group(1)]}.", key)
        else:
            key = pattern.sub(repl, key)
    return key


def tower_rules(vit: VideoViT, hf: str = "", mm: str = "") -> list[Rule]:
    """VivitModel keys under prefix `hf` ('' or 'vivit.') <-> a VideoViT at `mm` ('' or 'tower/')."""
    e = f"{hf}embeddings"
    rules = [
        Rule(f"{e}.cls_token", f"{mm}cls_token", LEADING_ONE),
        Rule(f"{e}.position_embeddings", f"{mm}spacetime_pos_embedding", LEADING_ONE),
        Rule(f"{e}.patch_embeddings.projection.weight", f"{mm}embedding/conv/kernel", CONV3D),
        Rule(f"{e}.patch_embeddings.projection.bias", f"{mm}embedding/conv/bias"),
        *[r for i in range(vit.depth) for r in layer_rules(f"{hf}encoder.layer.{i}", f"{mm}encoder/layer_{i}")],
        *layer_norm_rules(f"{hf}layernorm", f"{mm}ln_post"),
    ]
    return rules + (linear_rules(f"{hf}pooler.dense", f"{mm}pooler") if vit.pooler else [])


def classifier_rules(model: VideoClassifier) -> list[Rule]:
    return [*tower_rules(model.tower, "vivit.", "tower/"), *linear_rules("classifier", "head")]


def tower_fields(config: dict, *, pooler: bool) -> dict:
    """VivitConfig dict -> VideoViT fields computing what VivitModel (or the classifier's tower) does."""
    where = "VivitConfig"
    image_size = require(config, "image_size", where)
    t, ph, pw = config.get("tubelet_size", (2, 16, 16))
    if not isinstance(image_size, int) or ph != pw:
        raise ValueError(f"only square frames and patches are supported, got {image_size=} tubelet {[t, ph, pw]}")
    if not config.get("qkv_bias", True):
        raise ValueError("VivitConfig.qkv_bias=False is not supported")
    width = require(config, "hidden_size", where)
    if (pooler and config.get("pooler_output_size") not in (None, width)) or config.get("pooler_act", "tanh") != "tanh":
        raise ValueError("only a tanh pooler of the hidden size is supported (pooler_output_size, pooler_act)")
    return dict(
        width=width,
        depth=require(config, "num_hidden_layers", where),
        num_heads=require(config, "num_attention_heads", where),
        mlp_dim=require(config, "intermediate_size", where),
        patch_size=ph,
        tubelet_size=t,
        image_size=image_size,
        num_frames=config.get("num_frames", 32),
        channels=config.get("num_channels", 3),
        pooling="tok",
        posemb="learn_joint",
        final_norm="all",
        pooler=pooler,
        activation=activation_from_hf(config.get("hidden_act", "gelu_fast"), where),
        layer_norm_eps=config.get("layer_norm_eps", 1e-6),
        attention_dropout_rate=config.get("attention_probs_dropout_prob", 0.0),
    )


def build_tower(config: dict, dtype, param_dtype, overrides: dict) -> VideoViT:
    routed = split_overrides(overrides, {"": VideoViT})
    fields = tower_fields(config, pooler=True)
    return VideoViT(**{**fields, "dtype": dtype, "param_dtype": param_dtype, **routed[""]})


def build_classifier(config: dict, dtype, param_dtype, overrides: dict) -> VideoClassifier:
    routed = split_overrides(overrides, {"": VideoClassifier, "tower": VideoViT})
    common = dict(dtype=dtype, param_dtype=param_dtype)
    num_classes = config.get("num_labels") or len(config.get("id2label") or {})
    if not num_classes:
        raise ValueError("VivitForVideoClassification config has no labels (id2label / num_labels)")
    tower = VideoViT(**{**tower_fields(config, pooler=False), **common, **routed["tower"]})
    return VideoClassifier(tower=tower, num_classes=num_classes, **{**common, **routed[""]})


def _check_tower(vit, pooler: bool) -> None:
    refuse_unless(type(vit) is VideoViT, "VideoClassifier", "tower", type(vit).__name__, "ViViT is a VideoViT")
    for field, want, why in (
        ("posemb", "learn_joint", "ViViT learns one table over all tokens"),
        ("pooling", "tok", "ViViT has a class token"),
        ("final_norm", "all", "ViViT normalizes every output token"),
        ("pooler", pooler, "VivitModel has a tanh pooler, the classifier none"),
        ("key_bias", True, "ViViT's key projection has a bias"),
        ("patch_bias", True, "the Conv3d has a bias"),
        ("pre_norm", False, "ViViT has no norm before the encoder"),
    ):
        refuse_unless(getattr(vit, field) == want, "VideoViT", field, getattr(vit, field), f"needs {want!r}: {why}")


def tower_config(vit: VideoViT) -> dict:
    return {
        "model_type": "vivit",
        **encoder_fields(vit, activation_to_hf(vit.activation, "VideoViT")),
        "attention_probs_dropout_prob": vit.attention_dropout_rate,
        "num_channels": vit.channels,
        "image_size": vit.image_size,
        "num_frames": vit.num_frames,
        "tubelet_size": [vit.tubelet_size, vit.patch_size, vit.patch_size],
        "qkv_bias": True,
        "dtype": str(jnp.dtype(vit.param_dtype)),
    }


def export_tower(vit: VideoViT) -> dict:
    _check_tower(vit, pooler=True)
    return {"architectures": ["VivitModel"], **tower_config(vit)}


def export_classifier(model: VideoClassifier) -> dict:
    _check_tower(model.tower, pooler=False)
    return {
        "architectures": ["VivitForVideoClassification"],
        **tower_config(model.tower),
        **label_maps(model.num_classes),
    }


def _is_vivit(vit) -> bool:
    return isinstance(vit, VideoViT) and vit.posemb == "learn_joint"


CONVERTERS = (
    HFConverter(
        architecture="VivitModel",
        model_type="vivit",
        model_class=VideoViT,
        build_model=build_tower,
        export_config=export_tower,
        rules=tower_rules,
        example_inputs=lambda vit: {"videos": example_videos(vit)},
        normalize_key=normalize_key,
        exports=_is_vivit,
    ),
    HFConverter(
        architecture="VivitForVideoClassification",
        model_type="vivit",
        model_class=VideoClassifier,
        build_model=build_classifier,
        export_config=export_classifier,
        rules=classifier_rules,
        example_inputs=lambda model: {"videos": example_videos(model.tower)},
        normalize_key=normalize_key,
        exports=lambda model: _is_vivit(model.tower),
    ),
)
