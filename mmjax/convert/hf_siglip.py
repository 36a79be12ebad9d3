"""Hugging Face `SiglipModel`, `SiglipVisionModel`, `SiglipTextModel` <-> mmjax CLIP(ViT, TextTransformer), ViT,
TextTransformer.

Key layout (transformers 5; SiglipModel prefixes the towers with `vision_model.` / `text_model.`):
  vision: embeddings.patch_embedding.{weight, bias}, embeddings.position_embedding.weight (no class token),
          encoder.layers.{i}.* (as CLIP's), post_layernorm, head.{probe, attention.in_proj_weight/in_proj_bias
          (q; k; v fused, torch.nn.MultiheadAttention), attention.out_proj, layernorm, mlp.fc1, mlp.fc2}
  text:   embeddings.{token,position}_embedding.weight, encoder.layers.{i}.*, final_layer_norm, head.{weight, bias}
  SiglipModel: logit_scale [1], logit_bias [1].
transformers 4 saved the standalone towers with the prefix too (`vision_model.embeddings...`); both load.

Semantics that must match exactly: the vision tower applies post_layernorm to every token (last_hidden_state is
normalized; ViT final_norm='all') and pools with the MAP head, whose MLP uses the tower's activation; the text
tower is bidirectional (padding keys masked), pools the hidden state at the LAST POSITION whatever the mask
(TextTransformer pool='last_position'), then `head`; pooler_output is after the heads, and the embeddings are the
normalized pooler outputs: SigLIP has no separate projections (CLIP embed_dim=None). logits = exp(logit_scale) *
cos + logit_bias, with no clamp (max_logit_scale=inf: released SigLIPs have exp(logit_scale) above 100).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from mmjax.convert import hf_clip
from mmjax.convert.hf_clip import clip_layer_rules
from mmjax.convert.hf_common import (
    HFConverter,
    activation_from_hf,
    activation_to_hf,
    encoder_fields,
    image_fields,
    refuse_unless,
    require,
    split_overrides,
)
from mmjax.convert.mapping import (
    CONV,
    ONE_ELEMENT,
    Rule,
    fused_attention_rules,
    layer_norm_rules,
    linear_rules,
)
from mmjax.encoders.text import TextTransformer
from mmjax.encoders.vit import ViT
from mmjax.models.clip import CLIP


def _join(prefix: str, name: str, sep: str) -> str:
    return f"{prefix}{sep}{name}" if prefix else name


def vision_rules(vit: ViT, hf: str = "", mm: str = "") -> list[Rule]:
    """SigLIP vision tower under `hf` (e.g. 'vision_model', '' standalone) <-> ViT at `mm`."""

    def h(name):
        return _join(hf, name, ".")

    def m(name):
        return _join(mm, name, "/")

    rules = [
        Rule(h("embeddings.patch_embedding.weight"), m("embedding/conv/kernel"), CONV),
        Rule(h("embeddings.patch_embedding.bias"), m("embedding/conv/bias")),
        Rule(h("embeddings.position_embedding.weight"), m("pos_embedding")),
        *[r for i in range(vit.depth) for r in clip_layer_rules(h(f"encoder.layers.{i}"), m(f"encoder/layer_{i}"))],
        *layer_norm_rules(h("post_layernorm"), m("ln_post")),
    ]
    if vit.pooling == "map":
        rules += [
            Rule(h("head.probe"), m("map_head/probe")),
            *fused_attention_rules(h("head.attention"), m("map_head/attn")),
            *layer_norm_rules(h("head.layernorm"), m("map_head/ln")),
            *linear_rules(h("head.mlp.fc1"), m("map_head/mlp/fc1")),
            *linear_rules(h("head.mlp.fc2"), m("map_head/mlp/fc2")),
        ]
    return rules


def text_rules(text: TextTransformer, hf: str = "", mm: str = "") -> list[Rule]:
    """SigLIP text tower under `hf` (e.g. 'text_model', '' standalone) <-> TextTransformer at `mm`."""

    def h(name):
        return _join(hf, name, ".")

    def m(name):
        return _join(mm, name, "/")

    return [
        Rule(h("embeddings.token_embedding.weight"), m("token_embed/embedding")),
        Rule(h("embeddings.position_embedding.weight"), m("pos_embed/embedding")),
        *[r for i in range(text.depth) for r in clip_layer_rules(h(f"encoder.layers.{i}"), m(f"encoder/layer_{i}"))],
        *layer_norm_rules(h("final_layer_norm"), m("ln_final")),
        *linear_rules(h("head"), m("head")),
    ]


def rules(model: CLIP) -> list[Rule]:
    return [
        *vision_rules(model.image_tower, "vision_model", "image_tower"),
        *text_rules(model.text_tower, "text_model", "text_tower"),
        Rule("logit_scale", "logit_scale", ONE_ELEMENT),
        Rule("logit_bias", "logit_bias", ONE_ELEMENT),
    ]


# --- configs in ---------------------------------------------------------------------------------------------


def vit_fields(vc: dict, where: str = "vision_config") -> dict:
    """SiglipVisionConfig dict -> ViT fields computing what SiglipVisionModel computes."""
    image_size, patch_size = require(vc, "image_size", where), require(vc, "patch_size", where)
    if not isinstance(image_size, int) or not isinstance(patch_size, int):
        raise ValueError(f"only square images and patches are supported, got {image_size=} {patch_size=}")
    return dict(
        width=require(vc, "hidden_size", where),
        depth=require(vc, "num_hidden_layers", where),
        mlp_dim=require(vc, "intermediate_size", where),
        num_heads=require(vc, "num_attention_heads", where),
        patch_size=patch_size,
        image_size=image_size,
        channels=vc.get("num_channels", 3),
        pooling="map" if vc.get("vision_use_head", True) else "none",
        posemb="learn",
        pre_norm=False,
        final_norm="all",
        patch_bias=True,
        activation=activation_from_hf(vc.get("hidden_act", "gelu_pytorch_tanh"), where),
        layer_norm_eps=vc.get("layer_norm_eps", 1e-6),
        attention_dropout_rate=vc.get("attention_dropout", 0.0),
    )


def text_fields(tc: dict, where: str = "text_config") -> dict:
    """SiglipTextConfig dict -> TextTransformer fields computing what SiglipTextModel computes."""
    width = require(tc, "hidden_size", where)
    return dict(
        vocab_size=require(tc, "vocab_size", where),
        width=width,
        depth=require(tc, "num_hidden_layers", where),
        num_heads=require(tc, "num_attention_heads", where),
        mlp_dim=require(tc, "intermediate_size", where),
        max_length=tc.get("max_position_embeddings", 64),
        activation=activation_from_hf(tc.get("hidden_act", "gelu_pytorch_tanh"), where),
        layer_norm_eps=tc.get("layer_norm_eps", 1e-6),
        causal=False,
        pool="last_position",
        eos_token_id=None,
        projection_dim=tc.get("projection_size") or width,
        attention_dropout_rate=tc.get("attention_dropout", 0.0),
    )


def build_model(config: dict, dtype, param_dtype, overrides: dict) -> CLIP:
    """SiglipConfig dict -> CLIP(ViT, TextTransformer) with no projections and a logit bias."""
    vc = require(config, "vision_config", "SiglipConfig")
    tc = require(config, "text_config", "SiglipConfig")
    if not vc.get("vision_use_head", True):
        raise ValueError("SiglipModel needs vision_config.vision_use_head=True: its image embeddings are the head's")
    routed = split_overrides(overrides, {"": CLIP, "image_tower": ViT, "text_tower": TextTransformer})
    common = dict(dtype=dtype, param_dtype=param_dtype)
    return CLIP(
        image_tower=ViT(**{**vit_fields(vc), **common, **routed["image_tower"]}),
        text_tower=TextTransformer(**{**text_fields(tc), **common, **routed["text_tower"]}),
        **{
            "embed_dim": None,
            # Initial values only (big_vision's); the checkpoint's are loaded over them.
            "logit_scale_init": math.log(10.0),
            "logit_bias_init": -10.0,
            "max_logit_scale": math.inf,
            **common,
            **routed[""],
        },
    )


def build_vision(config: dict, dtype, param_dtype, overrides: dict) -> ViT:
    routed = split_overrides(overrides, {"": ViT})
    return ViT(**{**vit_fields(config, "SiglipVisionConfig"), "dtype": dtype, "param_dtype": param_dtype, **routed[""]})


def build_text(config: dict, dtype, param_dtype, overrides: dict) -> TextTransformer:
    routed = split_overrides(overrides, {"": TextTransformer})
    fields = text_fields(config, "SiglipTextConfig")
    return TextTransformer(**{**fields, "dtype": dtype, "param_dtype": param_dtype, **routed[""]})


# --- configs out --------------------------------------------------------------------------------------------


def _activation(name: str, where: str) -> str:
    # SigLIP's own spelling of the tanh gelu, so a loaded-and-saved config reads as the original did.
    return "gelu_pytorch_tanh" if name == "gelu_tanh" else activation_to_hf(name, where)


def vision_config(vit: ViT, *, need_head: bool) -> dict:
    """ViT -> SiglipVisionConfig dict; ValueError naming the field SiglipVisionModel cannot hold."""
    refuse_unless(type(vit) is ViT, "CLIP", "image_tower", type(vit).__name__, "SiglipVisionModel is a ViT")
    pools = ("map",) if need_head else ("map", "none")
    for field, ok, why in (
        ("pooling", vit.pooling in pools, f"SigLIP pools with its MAP head ({' or '.join(pools)})"),
        ("posemb", vit.posemb == "learn", "SigLIP learns its position table"),
        ("pre_norm", not vit.pre_norm, "SigLIP has no LayerNorm before the encoder"),
        ("final_norm", vit.final_norm == "all", "post_layernorm applies to every token"),
        ("patch_bias", vit.patch_bias, "the patch convolution has a bias"),
    ):
        refuse_unless(ok, "ViT", field, getattr(vit, field), why)
    return {
        "model_type": "siglip_vision_model",
        **encoder_fields(vit, _activation(vit.activation, "ViT")),
        **image_fields(vit),
        "vision_use_head": vit.pooling == "map",
        "dtype": str(jnp.dtype(vit.param_dtype)),
    }


def text_config(text: TextTransformer) -> dict:
    """TextTransformer -> SiglipTextConfig dict; ValueError naming the field SiglipTextModel cannot hold."""
    refuse_unless(type(text) is TextTransformer, "CLIP", "text_tower", type(text).__name__, "SiglipTextModel")
    refuse_unless(not text.causal, "TextTransformer", "causal", text.causal, "SigLIP text attention is bidirectional")
    refuse_unless(text.pool == "last_position", "TextTransformer", "pool", text.pool, "SigLIP pools the last position")
    refuse_unless(
        text.projection_dim is not None, "TextTransformer", "projection_dim", None, "SigLIP's text tower has a head"
    )
    return {
        "model_type": "siglip_text_model",
        "vocab_size": text.vocab_size,
        **encoder_fields(text, _activation(text.activation, "TextTransformer")),
        "max_position_embeddings": text.max_length,
        "projection_size": text.projection_dim,
        "dtype": str(jnp.dtype(text.param_dtype)),
    }


def export_config(model: CLIP) -> dict:
    refuse_unless(
        model.embed_dim is None,
        "CLIP",
        "embed_dim",
        model.embed_dim,
        "a CLIP with logit_bias_init set exports as SiglipModel, which has no projections (needs embed_dim=None)",
    )
    return {
        "architectures": ["SiglipModel"],
        "model_type": "siglip",
        "vision_config": vision_config(model.image_tower, need_head=True),
        "text_config": text_config(model.text_tower),
        "dtype": str(jnp.dtype(model.param_dtype)),
    }


def export_vision(vit: ViT) -> dict:
    return {"architectures": ["SiglipVisionModel"], **vision_config(vit, need_head=False)}


def export_text(text: TextTransformer) -> dict:
    return {"architectures": ["SiglipTextModel"], **text_config(text)}


# --- example inputs -----------------------------------------------------------------------------------------


def _images(vit: ViT):
    return jnp.zeros((1, vit.image_size, vit.image_size, vit.channels), jnp.float32)


# Non-persistent in transformers 5 (saved by some older versions); position ids are not weights.
_POSITION_IDS = ("vision_model.embeddings.position_ids", "text_model.embeddings.position_ids")

CONVERTERS = (
    HFConverter(
        architecture="SiglipModel",
        model_type="siglip",
        model_class=CLIP,
        build_model=build_model,
        export_config=export_config,
        rules=rules,
        example_inputs=hf_clip.example_inputs,  # the same two inputs as CLIP
        ignored_keys=frozenset(_POSITION_IDS),
        exports=lambda model: model.logit_bias_init is not None,
    ),
    HFConverter(
        architecture="SiglipVisionModel",
        model_type="siglip_vision_model",
        model_class=ViT,
        build_model=build_vision,
        export_config=export_vision,
        rules=vision_rules,
        example_inputs=lambda vit: {"images": _images(vit)},
        ignored_keys=frozenset({"embeddings.position_ids"}),
        normalize_key=lambda key: key.removeprefix("vision_model."),
    ),
    HFConverter(
        architecture="SiglipTextModel",
        model_type="siglip_text_model",
        model_class=TextTransformer,
        build_model=build_text,
        export_config=export_text,
        rules=text_rules,
        example_inputs=lambda text: {"input_ids": jnp.zeros((1, 1), jnp.int32)},
        ignored_keys=frozenset({"embeddings.position_ids"}),
        normalize_key=lambda key: key.removeprefix("text_model."),
    ),
)
