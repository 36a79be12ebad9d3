"""The encoder of Hugging Face `WhisperModel` / `WhisperForConditionalGeneration` -> mmjax
models.WhisperEncoderModel (load only: an encoder alone cannot be written back as either class).

Key layout (WhisperModel; WhisperForConditionalGeneration prefixes it with `model.`):
  encoder.conv1.{weight [D, mels, 3], bias}, encoder.conv2.{weight [D, D, 3], bias},
  encoder.embed_positions.weight [max_source_positions, D], encoder.layers.{i}.{self_attn_layer_norm,
  self_attn.{q_proj, k_proj (no bias), v_proj, out_proj}, final_layer_norm, fc1, fc2}, encoder.layer_norm.
The decoder's weights (decoder.*, proj_out) are skipped: this converter reads the encoder only.

Semantics that must match exactly: both convolutions use exact GELU whatever `activation_function` says (that
one is the layers'); positions come from the checkpoint's table, not recomputed; every LayerNorm has
PyTorch's default epsilon 1e-5.
"""

from __future__ import annotations

import jax.numpy as jnp

from mmjax.convert.hf_common import HFConverter, activation_from_hf, require, split_overrides
from mmjax.convert.mapping import Rule, Transform, attention_rules, layer_norm_rules, linear_rules
from mmjax.encoders.audio import WhisperEncoder
from mmjax.models.whisper import WhisperEncoderModel

# torch Conv1d weight [O, I, k] <-> flax Conv kernel [k, I, O].
CONV1D = Transform("conv1d", lambda w: w.transpose(2, 1, 0), lambda k: k.transpose(2, 1, 0))
# Every decoder key normalizes to this one ignored name, so a full checkpoint loads its encoder alone.
DECODER = "<decoder>"


def whisper_layer_rules(hf: str, mm: str) -> list[Rule]:
    """One WhisperEncoderLayer `{hf}` <-> layers.Block at `{mm}` (attention without a key bias)."""
    attn = attention_rules(
        f"{hf}.self_attn.q_proj",
        f"{hf}.self_attn.k_proj",
        f"{hf}.self_attn.v_proj",
        f"{hf}.self_attn.out_proj",
        f"{mm}/attn",
    )
    return [
        *layer_norm_rules(f"{hf}.self_attn_layer_norm", f"{mm}/ln_1"),
        *[r for r in attn if r.hf != f"{hf}.self_attn.k_proj.bias"],
        *layer_norm_rules(f"{hf}.final_layer_norm", f"{mm}/ln_2"),
        *linear_rules(f"{hf}.fc1", f"{mm}/mlp/fc1"),
        *linear_rules(f"{hf}.fc2", f"{mm}/mlp/fc2"),
    ]


def rules(model: WhisperEncoderModel) -> list[Rule]:
    mm = "encoder"
    return [
        Rule("encoder.conv1.weight", f"{mm}/conv1/kernel", CONV1D),
        Rule("encoder.conv1.bias", f"{mm}/conv1/bias"),
        Rule("encoder.conv2.weight", f"{mm}/conv2/kernel", CONV1D),
        Rule("encoder.conv2.bias", f"{mm}/conv2/bias"),
        Rule("encoder.embed_positions.weight", f"{mm}/pos_embedding"),
        *[
            r
            for i in range(model.encoder.depth)
            for r in whisper_layer_rules(f"encoder.layers.{i}", f"{mm}/encoder/layer_{i}")
        ],
        *layer_norm_rules("encoder.layer_norm", f"{mm}/ln_post"),
    ]


def build_model(config: dict, dtype, param_dtype, overrides: dict) -> WhisperEncoderModel:
    routed = split_overrides(overrides, {"": WhisperEncoderModel, "encoder": WhisperEncoder})
    fields = dict(
        width=require(config, "d_model", "WhisperConfig"),
        depth=require(config, "encoder_layers", "WhisperConfig"),
        mlp_dim=require(config, "encoder_ffn_dim", "WhisperConfig"),
        num_heads=require(config, "encoder_attention_heads", "WhisperConfig"),
        num_mel_bins=config.get("num_mel_bins", 80),
        max_positions=config.get("max_source_positions", 1500),
        activation=activation_from_hf(config.get("activation_function", "gelu"), "WhisperConfig"),
        layer_norm_eps=1e-5,
        dropout_rate=config.get("dropout", 0.0),
        attention_dropout_rate=config.get("attention_dropout", 0.0),
        dtype=dtype,
        param_dtype=param_dtype,
    )
    return WhisperEncoderModel(encoder=WhisperEncoder(**{**fields, **routed["encoder"]}))


def export_config(model: WhisperEncoderModel) -> dict:
    raise ValueError(
        "cannot export to Hugging Face: WhisperEncoderModel is an encoder only, and WhisperModel needs a decoder"
    )


def example_inputs(model: WhisperEncoderModel) -> dict:
    enc = model.encoder
    return {"input_features": jnp.zeros((1, enc.num_mel_bins, 2 * enc.max_positions), jnp.float32)}


def normalize_key(key: str) -> str:
    key = key.removeprefix("model.")
    return key if key.startswith("encoder.") else DECODER


def _converter(architecture: str) -> HFConverter:
    return HFConverter(
        architecture=architecture,
        model_type="whisper",
        model_class=WhisperEncoderModel,
        build_model=build_model,
        export_config=export_config,
        rules=rules,
        example_inputs=example_inputs,
        ignored_keys=frozenset({DECODER}),
        normalize_key=normalize_key,
    )


CONVERTERS = (_converter("WhisperModel"), _converter("WhisperForConditionalGeneration"))
