"""The encoder of Hugging Face `WhisperModel` / `WhisperForConditionalGeneration` <-> mmjax
models.WhisperEncoderModel.

Key layout (WhisperModel; WhisperForConditionalGeneration prefixes it with `model.`):
  encoder.conv1.{weight [D, mels, 3], bias}, encoder.conv2.{weight [D, D, 3], bias},
  encoder.embed_positions.weight [max_source_positions, D], encoder.layers.{i}.{self_attn_layer_norm,
  self_attn.{q_proj, k_proj (no bias), v_proj, out_proj}, final_layer_norm, fc1, fc2}, encoder.layer_norm.
The decoder's weights (decoder.*, proj_out) are skipped on load: this converter reads the encoder only.

Export carries the encoder only. save_pretrained writes a `WhisperModel` directory whose config.json describes
this encoder plus the smallest decoder that still reads it (one layer, with cross-attention, shaped like the
encoder's layers) over Whisper's multilingual vocabulary and special tokens, so Whisper's tokenizer fits it; no
decoder weight is written. transformers' from_pretrained (WhisperModel, or WhisperForConditionalGeneration)
initialises the decoder at random and lists its keys as missing (a warning, not an error): the directory is for
encoder use (`model.encoder`, WhisperForAudioClassification) or for fine-tuning a decoder from scratch.
WhisperForConditionalGeneration also warns that the tied proj_out / decoder.embed_tokens are both absent ("seem
corrupted", transformers 5); it then initialises and ties them all the same.

Semantics that must match exactly: both convolutions use exact GELU whatever `activation_function` says (that
one is the layers'); positions come from the checkpoint's table, not recomputed (transformers keeps a loaded
table and writes sinusoids only into a missing one); every LayerNorm has PyTorch's default epsilon 1e-5.
"""

from __future__ import annotations

import jax.numpy as jnp

from mmjax.convert.hf_common import (
    HFConverter,
    activation_from_hf,
    activation_to_hf,
    refuse_unless,
    require,
    split_overrides,
)
from mmjax.convert.mapping import Rule, Transform, attention_rules, layer_norm_rules, linear_rules
from mmjax.encoders.audio import WhisperEncoder
from mmjax.models.whisper import WhisperEncoderModel

# torch Conv1d weight [O, I, k] <-> flax Conv kernel [k, I, O].
CONV1D = Transform("conv1d", lambda w: w.transpose(2, 1, 0), lambda k: k.transpose(2, 1, 0))
# Every decoder key normalizes to this one ignored name, so a full checkpoint loads its encoder alone.
DECODER = "<decoder>"
# The exported decoder's vocabulary and special tokens: Whisper's multilingual ones (WhisperConfig's defaults,
# written out so the directory does not depend on a transformers version's defaults).
DECODER_TOKENS = {
    "vocab_size": 51865,
    "max_target_positions": 448,
    "pad_token_id": 50256,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "decoder_start_token_id": 50257,
    "begin_suppress_tokens": [220, 50256],
}


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
    """WhisperEncoderModel -> a WhisperConfig whose decoder is one untrained layer (see the module docstring)."""
    enc = model.encoder
    refuse_unless(
        enc.layer_norm_eps == 1e-5,
        "WhisperEncoder",
        "layer_norm_eps",
        enc.layer_norm_eps,
        "transformers' Whisper LayerNorms always use 1e-5",
    )
    ffn = enc.mlp_dim or 4 * enc.width
    return {
        "architectures": ["WhisperModel"],
        "model_type": "whisper",
        "d_model": enc.width,
        "encoder_layers": enc.depth,
        "encoder_attention_heads": enc.num_heads,
        "encoder_ffn_dim": ffn,
        "num_mel_bins": enc.num_mel_bins,
        "max_source_positions": enc.max_positions,
        "activation_function": activation_to_hf(enc.activation, "WhisperEncoder"),
        "dropout": enc.dropout_rate,
        # mmjax's MLP drops its hidden activations at the block's one rate; Whisper names that rate apart.
        "activation_dropout": enc.dropout_rate,
        "attention_dropout": enc.attention_dropout_rate,
        "encoder_layerdrop": 0.0,
        # One layer, not zero: a decoder without layers has no cross-attention and never sees the audio.
        "decoder_layers": 1,
        "decoder_attention_heads": enc.num_heads,
        "decoder_ffn_dim": ffn,
        "decoder_layerdrop": 0.0,
        **DECODER_TOKENS,
        "dtype": str(jnp.dtype(enc.param_dtype)),
    }


def example_inputs(model: WhisperEncoderModel) -> dict:
    enc = model.encoder
    return {"input_features": jnp.zeros((1, enc.num_mel_bins, 2 * enc.max_positions), jnp.float32)}


def normalize_key(key: str) -> str:
    key = key.removeprefix("model.")
    return key if key.startswith("encoder.") else DECODER


def _converter(architecture: str, exports=None) -> HFConverter:
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
        exports=exports,
    )


# save_pretrained always writes a WhisperModel: WhisperForConditionalGeneration's only extra weight, proj_out, is
# tied to the decoder's embeddings, which an export does not carry (that class still loads the directory).
CONVERTERS = (
    _converter("WhisperModel"),
    _converter("WhisperForConditionalGeneration", exports=lambda model: False),
)
