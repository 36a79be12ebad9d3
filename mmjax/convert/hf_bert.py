"""Hugging Face `BertModel` <-> mmjax `models.BertModel(bert=encoders.Bert(...))`.

Key layout (transformers' BertModel, no prefix):
  embeddings.{word,position,token_type}_embeddings.weight, embeddings.LayerNorm
  encoder.layer.{i}.attention.self.{query,key,value}, attention.output.dense, attention.output.LayerNorm,
  encoder.layer.{i}.intermediate.dense, output.dense, output.LayerNorm
  pooler.dense
`bert_layer_rules` / `bert_embedding_rules` take prefixes on both sides so single-stream models built on the
same layers (VisualBERT's `visual_bert.encoder.layer.{i}`) reuse them.
"""

from __future__ import annotations

import jax.numpy as jnp

from mmjax.convert.hf_common import (
    HFConverter,
    activation_from_hf,
    activation_to_hf,
    require,
    split_overrides,
)
from mmjax.convert.mapping import Rule, attention_rules, layer_norm_rules, linear_rules
from mmjax.encoders.text import Bert
from mmjax.models.bert import BertModel


def bert_layer_rules(hf: str, mm: str) -> list[Rule]:
    """One post-LN BERT layer: `{hf}.attention...` <-> layers.Block at `{mm}` (pre_norm=False)."""
    return [
        *attention_rules(
            f"{hf}.attention.self.query",
            f"{hf}.attention.self.key",
            f"{hf}.attention.self.value",
            f"{hf}.attention.output.dense",
            f"{mm}/attn",
        ),
        # In post-LN form Block.ln_1 normalizes the attention residual and ln_2 the MLP residual.
        *layer_norm_rules(f"{hf}.attention.output.LayerNorm", f"{mm}/ln_1"),
        *linear_rules(f"{hf}.intermediate.dense", f"{mm}/mlp/fc1"),
        *linear_rules(f"{hf}.output.dense", f"{mm}/mlp/fc2"),
        *layer_norm_rules(f"{hf}.output.LayerNorm", f"{mm}/ln_2"),
    ]


def bert_encoder_rules(hf: str, mm: str, num_layers: int) -> list[Rule]:
    """`{hf}.layer.{i}` <-> layers.Encoder `{mm}/layer_{i}` for every layer."""
    return [rule for i in range(num_layers) for rule in bert_layer_rules(f"{hf}.layer.{i}", f"{mm}/layer_{i}")]


def bert_embedding_rules(hf: str, mm: str) -> list[Rule]:
    """`{hf}.word_embeddings` ... <-> encoders.text.BertEmbeddings at `{mm}`."""
    return [
        Rule(f"{hf}.word_embeddings.weight", f"{mm}/token_embed/embedding"),
        Rule(f"{hf}.position_embeddings.weight", f"{mm}/pos_embed/embedding"),
        Rule(f"{hf}.token_type_embeddings.weight", f"{mm}/type_embed/embedding"),
        *layer_norm_rules(f"{hf}.LayerNorm", f"{mm}/ln"),
    ]


def rules(model: BertModel) -> list[Rule]:
    bert = model.bert
    out = [
        *bert_embedding_rules("embeddings", "bert/embeddings"),
        *bert_encoder_rules("encoder", "bert/encoder", bert.depth),
    ]
    if bert.add_pooler:
        out += linear_rules("pooler.dense", "bert/pooler")
    return out


def build_model(config: dict, dtype, param_dtype, overrides: dict) -> BertModel:
    """BertConfig dict -> BertModel computing exactly what Hugging Face's does (dropout rates kept)."""
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(
            f"BertConfig.position_embedding_type={config['position_embedding_type']!r} is not supported "
            "(only 'absolute')"
        )
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise ValueError("BertConfig with is_decoder/add_cross_attention is not supported (encoder-only BERT)")
    routed = split_overrides(overrides, {"": BertModel, "bert": Bert})
    bert_kwargs = dict(
        vocab_size=require(config, "vocab_size", "BertConfig"),
        width=require(config, "hidden_size", "BertConfig"),
        depth=require(config, "num_hidden_layers", "BertConfig"),
        num_heads=require(config, "num_attention_heads", "BertConfig"),
        mlp_dim=require(config, "intermediate_size", "BertConfig"),
        max_length=config.get("max_position_embeddings", 512),
        type_vocab_size=config.get("type_vocab_size", 2),
        activation=activation_from_hf(config.get("hidden_act", "gelu"), "BertConfig"),
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        dropout_rate=config.get("hidden_dropout_prob", 0.1),
        attention_dropout_rate=config.get("attention_probs_dropout_prob", 0.1),
        dtype=dtype,
        param_dtype=param_dtype,
    )
    return BertModel(bert=Bert(**{**bert_kwargs, **routed["bert"]}), **routed[""])


def export_config(model: BertModel) -> dict:
    """BertModel -> BertConfig dict.

    A model with add_pooler=False is written without pooler weights; Hugging Face must then be told
    `BertModel.from_pretrained(dir, add_pooling_layer=False)` (the config has no field for it). `pool` is an
    mmjax choice about which vector to use, not a weight, so any value exports.
    """
    return {"architectures": ["BertModel"], "model_type": "bert", **bert_config_fields(model.bert)}


def bert_config_fields(bert: Bert) -> dict:
    """The BertConfig fields of a Bert tower (shared by every BERT-based architecture's export)."""
    return {
        "vocab_size": bert.vocab_size,
        "hidden_size": bert.width,
        "num_hidden_layers": bert.depth,
        "num_attention_heads": bert.num_heads,
        "intermediate_size": bert.mlp_dim or 4 * bert.width,
        "hidden_act": activation_to_hf(bert.activation, "Bert"),
        "max_position_embeddings": bert.max_length,
        "type_vocab_size": bert.type_vocab_size,
        "layer_norm_eps": bert.layer_norm_eps,
        "hidden_dropout_prob": bert.dropout_rate,
        "attention_probs_dropout_prob": bert.attention_dropout_rate,
        "position_embedding_type": "absolute",
        "pad_token_id": 0,  # BERT's [PAD]; in PyTorch it only zeroes that row's init and gradient, not outputs
        "dtype": str(jnp.dtype(bert.param_dtype)),
    }


def example_inputs(model: BertModel) -> dict:
    return {"input_ids": jnp.zeros((1, 1), jnp.int32)}


def normalize_key(key: str) -> str:
    """Checkpoint names from older BERT code and from task models -> BertModel names.

    TF-era checkpoints call LayerNorm parameters gamma/beta. Task classes (BertForMaskedLM, ...) nest the
    encoder under `bert.`; the prefix is dropped, but their heads (`cls.*`, `classifier.*`) keep their names
    and are then reported as unexpected keys, never dropped silently.
    """
    key = key.removeprefix("bert.")
    if key.endswith("LayerNorm.gamma"):
        key = key[: -len("gamma")] + "weight"
    elif key.endswith("LayerNorm.beta"):
        key = key[: -len("beta")] + "bias"
    return key


CONVERTER = HFConverter(
    architecture="BertModel",
    model_type="bert",
    model_class=BertModel,
    build_model=build_model,
    export_config=export_config,
    rules=rules,
    example_inputs=example_inputs,
    # Buffers transformers registers on the embeddings; older versions saved them with the weights.
    ignored_keys=frozenset({"embeddings.position_ids", "embeddings.token_type_ids"}),
    normalize_key=normalize_key,
)
