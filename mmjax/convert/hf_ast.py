"""Hugging Face `ASTModel`, `ASTForAudioClassification` <-> mmjax models.ASTModel, ASTForAudioClassification.

Key layout as transformers writes it to disk (transformers 5 renames the modules in memory, q_proj/o_proj under
`layers.{i}`, but loads and saves these names; ASTForAudioClassification prefixes the tower with
`audio_spectrogram_transformer.`):
  embeddings.{cls_token [1, 1, D], distillation_token [1, 1, D], position_embeddings [1, 2 + N, D],
  patch_embeddings.projection.{weight [D, 1, p, p], bias}}, encoder.layer.{i}.{layernorm_before,
  attention.attention.{query, key, value}, attention.output.dense, layernorm_after, intermediate.dense,
  output.dense}, layernorm; the classifier: classifier.{layernorm, dense}.

Semantics that must match exactly: the input [B, T, F] is transposed to [B, 1, F, T] before the Conv2d, so the
kernel's height runs over frequency and patches are numbered frequency-major (encoders.AST does the same);
the layers are pre-LN, the final layernorm applies to every token, and pooler_output is the mean of the class
and distillation tokens; one layer_norm_eps serves every LayerNorm, the classifier's included.
"""

from __future__ import annotations

import jax.numpy as jnp

from mmjax.convert.hf_common import (
    HFConverter,
    activation_from_hf,
    activation_to_hf,
    label_maps,
    refuse_unless,
    require,
    split_overrides,
)
from mmjax.convert.mapping import CONV, Rule, Transform, attention_rules, layer_norm_rules, linear_rules
from mmjax.encoders.audio import AST
from mmjax.models.ast import ASTForAudioClassification, ASTModel

# Hugging Face keeps the prefix tokens and the position table with leading singleton axes.
TOKEN = Transform("token", lambda x: x.reshape(-1), lambda x: x.reshape(1, 1, -1))
TABLE = Transform("table", lambda x: x.reshape(x.shape[1:]), lambda x: x.reshape((1, *x.shape)))
PREFIX = "audio_spectrogram_transformer"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def ast_layer_rules(hf: str, mm: str) -> list[Rule]:
    """One ASTLayer (ViT-style names) `{hf}` <-> layers.Block at `{mm}`."""
    return [
        *layer_norm_rules(f"{hf}.layernorm_before", f"{mm}/ln_1"),
        *attention_rules(
            f"{hf}.attention.attention.query",
            f"{hf}.attention.attention.key",
            f"{hf}.attention.attention.value",
            f"{hf}.attention.output.dense",
            f"{mm}/attn",
        ),
        *layer_norm_rules(f"{hf}.layernorm_after", f"{mm}/ln_2"),
        *linear_rules(f"{hf}.intermediate.dense", f"{mm}/mlp/fc1"),
        *linear_rules(f"{hf}.output.dense", f"{mm}/mlp/fc2"),
    ]


def tower_rules(ast: AST, hf: str = "", mm: str = "ast") -> list[Rule]:
    """An ASTModel under `hf` ('' standalone) <-> encoders.AST at `mm`."""
    e = _join(hf, "embeddings")
    return [
        Rule(f"{e}.cls_token", f"{mm}/cls_token", TOKEN),
        Rule(f"{e}.distillation_token", f"{mm}/dist_token", TOKEN),
        Rule(f"{e}.position_embeddings", f"{mm}/pos_embedding", TABLE),
        Rule(f"{e}.patch_embeddings.projection.weight", f"{mm}/embedding/conv/kernel", CONV),
        Rule(f"{e}.patch_embeddings.projection.bias", f"{mm}/embedding/conv/bias"),
        *[
            r
            for i in range(ast.depth)
            for r in ast_layer_rules(_join(hf, f"encoder.layer.{i}"), f"{mm}/encoder/layer_{i}")
        ],
        *layer_norm_rules(_join(hf, "layernorm"), f"{mm}/ln_post"),
    ]


def classification_rules(model: ASTForAudioClassification) -> list[Rule]:
    return [
        *tower_rules(model.ast, PREFIX),
        *layer_norm_rules("classifier.layernorm", "classifier/layernorm"),
        *linear_rules("classifier.dense", "classifier/dense"),
    ]


def ast_fields(config: dict, dtype, param_dtype) -> dict:
    """ASTConfig dict -> encoders.AST fields; ValueError for what AST cannot reproduce exactly."""
    width = require(config, "hidden_size", "ASTConfig")
    heads = require(config, "num_attention_heads", "ASTConfig")
    patch = config.get("patch_size", 16)
    if not isinstance(patch, int):
        # ASTPatchEmbeddings builds kernel_size=(patch_size, patch_size): only an int gives a square kernel.
        raise ValueError(f"ASTConfig.patch_size must be one int, got {patch!r}")
    if not config.get("qkv_bias", True):
        raise ValueError("ASTConfig.qkv_bias=False is not supported (mmjax attention has q/k/v biases)")
    head_dim = config.get("head_dim")
    if head_dim is not None and head_dim * heads != width:
        raise ValueError(f"ASTConfig.head_dim={head_dim} x {heads} heads != hidden_size {width}")
    return dict(
        width=width,
        depth=require(config, "num_hidden_layers", "ASTConfig"),
        mlp_dim=require(config, "intermediate_size", "ASTConfig"),
        num_heads=heads,
        patch_size=patch,
        frequency_stride=config.get("frequency_stride", 10),
        time_stride=config.get("time_stride", 10),
        num_mel_bins=config.get("num_mel_bins", 128),
        max_length=config.get("max_length", 1024),
        activation=activation_from_hf(config.get("hidden_act", "gelu"), "ASTConfig"),
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        dropout_rate=config.get("hidden_dropout_prob", 0.0),
        attention_dropout_rate=config.get("attention_probs_dropout_prob", 0.0),
        dtype=dtype,
        param_dtype=param_dtype,
    )


def num_labels(config: dict) -> int:
    """PretrainedConfig derives num_labels from id2label when it is saved (it always is); else num_labels."""
    if config.get("id2label"):
        return len(config["id2label"])
    return config.get("num_labels", 2)


def build_model(config: dict, dtype, param_dtype, overrides: dict) -> ASTModel:
    routed = split_overrides(overrides, {"": ASTModel, "ast": AST})
    return ASTModel(ast=AST(**{**ast_fields(config, dtype, param_dtype), **routed["ast"]}))


def build_classifier(config: dict, dtype, param_dtype, overrides: dict) -> ASTForAudioClassification:
    routed = split_overrides(overrides, {"": ASTForAudioClassification, "ast": AST})
    ast = AST(**{**ast_fields(config, dtype, param_dtype), **routed["ast"]})
    return ASTForAudioClassification(ast=ast, **{"num_labels": num_labels(config), **routed[""]})


def ast_config(ast: AST) -> dict:
    """encoders.AST -> ASTConfig fields; ValueError naming the field ASTConfig cannot hold."""
    refuse_unless(
        not ast.interpolate_pos_embed,
        "AST",
        "interpolate_pos_embed",
        True,
        "ASTModel takes exactly max_length frames",
    )
    return {
        "model_type": "audio-spectrogram-transformer",
        "hidden_size": ast.width,
        "num_hidden_layers": ast.depth,
        "num_attention_heads": ast.num_heads,
        "intermediate_size": ast.mlp_dim or 4 * ast.width,
        "hidden_act": activation_to_hf(ast.activation, "AST"),
        "hidden_dropout_prob": ast.dropout_rate,
        "attention_probs_dropout_prob": ast.attention_dropout_rate,
        "layer_norm_eps": ast.layer_norm_eps,
        "patch_size": ast.patch_size,
        "qkv_bias": True,
        "frequency_stride": ast.frequency_stride,
        "time_stride": ast.time_stride,
        "max_length": ast.max_length,
        "num_mel_bins": ast.num_mel_bins,
        "dtype": str(jnp.dtype(ast.param_dtype)),
    }


def export_model(model: ASTModel) -> dict:
    return {"architectures": ["ASTModel"], **ast_config(model.ast)}


def export_classifier(model: ASTForAudioClassification) -> dict:
    return {
        "architectures": ["ASTForAudioClassification"],
        **ast_config(model.ast),
        **label_maps(model.num_labels),
    }


def example_inputs(model: ASTModel | ASTForAudioClassification) -> dict:
    return {"input_values": jnp.zeros((1, model.ast.max_length, model.ast.num_mel_bins), jnp.float32)}


CONVERTERS = (
    HFConverter(
        architecture="ASTModel",
        model_type="audio-spectrogram-transformer",
        model_class=ASTModel,
        build_model=build_model,
        export_config=export_model,
        rules=lambda model: tower_rules(model.ast),
        example_inputs=example_inputs,
        # A classification checkpoint without `architectures` loads its tower here; its classifier keys then
        # surface as unexpected, never silently dropped.
        normalize_key=lambda key: key.removeprefix(f"{PREFIX}."),
    ),
    HFConverter(
        architecture="ASTForAudioClassification",
        model_type="audio-spectrogram-transformer",
        model_class=ASTForAudioClassification,
        build_model=build_classifier,
        export_config=export_classifier,
        rules=classification_rules,
        example_inputs=example_inputs,
    ),
)
