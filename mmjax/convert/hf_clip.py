"""Hugging Face `CLIPModel` <-> mmjax `models.CLIP(ViT, TextTransformer)`.

Key layout (transformers' CLIPModel):
  vision_model.embeddings.{class_embedding, patch_embedding.weight (no bias), position_embedding.weight},
  vision_model.pre_layrnorm (sic), vision_model.encoder.layers.{i}.*, vision_model.post_layernorm,
  text_model.embeddings.{token,position}_embedding.weight, text_model.encoder.layers.{i}.*,
  text_model.final_layer_norm, visual_projection.weight, text_projection.weight (no biases), logit_scale.
Each encoder layer: self_attn.{q,k,v,out}_proj, layer_norm1, mlp.fc1, mlp.fc2, layer_norm2 (pre-LN).

Semantics that must match exactly: the vision tower's last_hidden_state is the encoder output without
post_layernorm, which is applied to the class token only (ViT final_norm='pooled'); the text tower pools the
token with the largest id when `eos_token_id == 2` (configs written before transformers PR #24773) and the
first `eos_token_id` otherwise.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

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
from mmjax.convert.mapping import CONV, Rule, attention_rules, layer_norm_rules, linear_rules
from mmjax.encoders.text import TextTransformer
from mmjax.encoders.vit import ViT
from mmjax.models.clip import CLIP

# The eos_token_id value that switches Hugging Face CLIP to argmax pooling (see module docstring).
LEGACY_EOS_TOKEN_ID = 2


def clip_layer_rules(hf: str, mm: str) -> list[Rule]:
    """One pre-LN CLIP encoder layer `{hf}` <-> layers.Block at `{mm}`."""
    return [
        *layer_norm_rules(f"{hf}.layer_norm1", f"{mm}/ln_1"),
        *attention_rules(
            f"{hf}.self_attn.q_proj",
            f"{hf}.self_attn.k_proj",
            f"{hf}.self_attn.v_proj",
            f"{hf}.self_attn.out_proj",
            f"{mm}/attn",
        ),
        *layer_norm_rules(f"{hf}.layer_norm2", f"{mm}/ln_2"),
        *linear_rules(f"{hf}.mlp.fc1", f"{mm}/mlp/fc1"),
        *linear_rules(f"{hf}.mlp.fc2", f"{mm}/mlp/fc2"),
    ]


def _encoder_rules(hf: str, mm: str, num_layers: int) -> list[Rule]:
    return [r for i in range(num_layers) for r in clip_layer_rules(f"{hf}.layers.{i}", f"{mm}/layer_{i}")]


def rules(model: CLIP) -> list[Rule]:
    v, t = "vision_model", "text_model"
    return [
        Rule(f"{v}.embeddings.class_embedding", "image_tower/cls_token"),
        Rule(f"{v}.embeddings.patch_embedding.weight", "image_tower/embedding/conv/kernel", CONV),
        Rule(f"{v}.embeddings.position_embedding.weight", "image_tower/pos_embedding"),
        *layer_norm_rules(f"{v}.pre_layrnorm", "image_tower/ln_pre"),
        *_encoder_rules(f"{v}.encoder", "image_tower/encoder", model.image_tower.depth),
        *layer_norm_rules(f"{v}.post_layernorm", "image_tower/ln_post"),
        Rule(f"{t}.embeddings.token_embedding.weight", "text_tower/token_embed/embedding"),
        Rule(f"{t}.embeddings.position_embedding.weight", "text_tower/pos_embed/embedding"),
        *_encoder_rules(f"{t}.encoder", "text_tower/encoder", model.text_tower.depth),
        *layer_norm_rules(f"{t}.final_layer_norm", "text_tower/ln_final"),
        *linear_rules("visual_projection", "image_projection", bias=False),
        *linear_rules("text_projection", "text_projection", bias=False),
        Rule("logit_scale", "logit_scale"),
    ]


def _text_pooling(eos_token_id) -> dict:
    if isinstance(eos_token_id, bool) or not isinstance(eos_token_id, int):
        raise ValueError(f"CLIPTextConfig.eos_token_id must be one int, got {eos_token_id!r}")
    if eos_token_id == LEGACY_EOS_TOKEN_ID:
        return {"pool": "argmax", "eos_token_id": None}
    return {"pool": "eos", "eos_token_id": eos_token_id}


def build_model(config: dict, dtype, param_dtype, overrides: dict) -> CLIP:
    """CLIPConfig dict -> CLIP(ViT, TextTransformer) computing exactly what CLIPModel computes."""
    vc = require(config, "vision_config", "CLIPConfig")
    tc = require(config, "text_config", "CLIPConfig")
    image_size, patch_size = (
        require(vc, "image_size", "vision_config"),
        require(vc, "patch_size", "vision_config"),
    )
    if not isinstance(image_size, int) or not isinstance(patch_size, int):
        raise ValueError(f"only square images and patches are supported, got {image_size=} {patch_size=}")
    routed = split_overrides(overrides, {"": CLIP, "image_tower": ViT, "text_tower": TextTransformer})
    common = dict(dtype=dtype, param_dtype=param_dtype)
    vit = dict(
        width=require(vc, "hidden_size", "vision_config"),
        depth=require(vc, "num_hidden_layers", "vision_config"),
        mlp_dim=require(vc, "intermediate_size", "vision_config"),
        num_heads=require(vc, "num_attention_heads", "vision_config"),
        patch_size=patch_size,
        image_size=image_size,
        channels=vc.get("num_channels", 3),
        pooling="tok",
        posemb="learn",
        pre_norm=True,
        final_norm="pooled",
        patch_bias=False,
        activation=activation_from_hf(vc.get("hidden_act", "quick_gelu"), "vision_config"),
        layer_norm_eps=vc.get("layer_norm_eps", 1e-5),
        attention_dropout_rate=vc.get("attention_dropout", 0.0),
        **common,
    )
    text = dict(
        vocab_size=require(tc, "vocab_size", "text_config"),
        width=require(tc, "hidden_size", "text_config"),
        depth=require(tc, "num_hidden_layers", "text_config"),
        num_heads=require(tc, "num_attention_heads", "text_config"),
        mlp_dim=require(tc, "intermediate_size", "text_config"),
        max_length=tc.get("max_position_embeddings", 77),
        activation=activation_from_hf(tc.get("hidden_act", "quick_gelu"), "text_config"),
        layer_norm_eps=tc.get("layer_norm_eps", 1e-5),
        causal=True,
        attention_dropout_rate=tc.get("attention_dropout", 0.0),
        **_text_pooling(require(tc, "eos_token_id", "text_config")),
        **common,
    )
    return CLIP(
        image_tower=ViT(**{**vit, **routed["image_tower"]}),
        text_tower=TextTransformer(**{**text, **routed["text_tower"]}),
        **{
            "embed_dim": config.get("projection_dim", 512),
            "projection_bias": False,
            "logit_scale_init": config.get("logit_scale_init_value", math.log(1 / 0.07)),
            "logit_bias_init": None,
            **common,
            **routed[""],
        },
    )


def export_config(model: CLIP) -> dict:
    """CLIP -> CLIPConfig dict; ValueError naming the field for models CLIPModel cannot hold."""
    vit, text = model.image_tower, model.text_tower
    refuse_unless(type(vit) is ViT, "CLIP", "image_tower", type(vit).__name__, "CLIPVisionModel is a ViT")
    refuse_unless(type(text) is TextTransformer, "CLIP", "text_tower", type(text).__name__, "CLIPTextModel")
    refuse_unless(not model.projection_bias, "CLIP", "projection_bias", True, "CLIP projections have no bias")
    refuse_unless(model.logit_bias_init is None, "CLIP", "logit_bias_init", model.logit_bias_init, "SigLIP bias")
    for field, want, why in (
        ("pooling", "tok", "CLIP pools the class token"),
        ("posemb", "learn", "CLIP learns its position table"),
        ("pre_norm", True, "CLIP has pre_layrnorm"),
        ("final_norm", "pooled", "post_layernorm applies to the pooled token only"),
        ("patch_bias", False, "the patch convolution has no bias"),
    ):
        refuse_unless(getattr(vit, field) == want, "ViT", field, getattr(vit, field), f"needs {want!r}: {why}")
    refuse_unless(text.causal, "TextTransformer", "causal", text.causal, "CLIP text attention is causal")
    if text.pool == "argmax":
        eos = LEGACY_EOS_TOKEN_ID
    else:
        refuse_unless(text.pool == "eos", "TextTransformer", "pool", text.pool, "CLIP pools argmax or eos")
        refuse_unless(
            text.eos_token_id != LEGACY_EOS_TOKEN_ID,
            "TextTransformer",
            "eos_token_id",
            text.eos_token_id,
            "transformers treats eos_token_id=2 as argmax pooling",
        )
        eos = text.eos_token_id
    dtype = str(jnp.dtype(model.param_dtype))
    text_config = {
        "model_type": "clip_text_model",
        "vocab_size": text.vocab_size,
        **encoder_fields(text, activation_to_hf(text.activation, "TextTransformer")),
        "max_position_embeddings": text.max_length,
        "projection_dim": model.embed_dim,
        "eos_token_id": eos,
        "dtype": dtype,
    }
    vision_config = {
        "model_type": "clip_vision_model",
        **encoder_fields(vit, activation_to_hf(vit.activation, "ViT")),
        **image_fields(vit),
        "projection_dim": model.embed_dim,
        "dtype": dtype,
    }
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": model.embed_dim,
        "logit_scale_init_value": model.logit_scale_init,
        "text_config": text_config,
        "vision_config": vision_config,
        "dtype": dtype,
    }


def example_inputs(model: CLIP) -> dict:
    vit = model.image_tower
    return {
        "pixel_values": jnp.zeros((1, vit.image_size, vit.image_size, vit.channels), jnp.float32),
        "input_ids": jnp.zeros((1, 1), jnp.int32),
    }


CONVERTER = HFConverter(
    architecture="CLIPModel",
    model_type="clip",
    model_class=CLIP,
    build_model=build_model,
    export_config=export_config,
    rules=rules,
    example_inputs=example_inputs,
    # Non-persistent in current transformers, saved by older versions; position ids are not weights.
    ignored_keys=frozenset({"text_model.embeddings.position_ids", "vision_model.embeddings.position_ids"}),
    exports=lambda model: model.logit_bias_init is None,  # with a logit bias: SiglipModel (hf_siglip.py)
)
