"""Hugging Face VisualBertModel / ForPreTraining / ForQuestionAnswering / ForVisualReasoning <-> mmjax.

Key layout (transformers' VisualBertModel; task classes nest it under `visual_bert.`):
  embeddings.{word,position,token_type}_embeddings, embeddings.LayerNorm          -> bert/embeddings
  embeddings.visual_projection, visual_token_type_embeddings, visual_position_embeddings -> visual
  encoder.layer.{i}.* (BERT layers), pooler.dense                                 -> bert/encoder, bert/pooler
Heads: cls.predictions.{transform.dense, transform.LayerNorm, bias[, decoder]} and cls.seq_relationship
(pretraining); cls (question answering, visual reasoning). With tie_word_embeddings (the default) the MLM decoder
is the word-embedding table and its bias is cls.predictions.bias, so neither is stored separately.

Configs Hugging Face cannot express the same way are refused by name: bypass_transformer=True on load; an image
tower (grid mode), box embeddings or a standalone visual LayerNorm on save.
"""

from __future__ import annotations

import jax.numpy as jnp

from mmjax.convert.hf_bert import bert_config_fields, bert_embedding_rules, bert_encoder_rules
from mmjax.convert.hf_common import (
    HFConverter,
    activation_from_hf,
    label_maps,
    refuse_unless,
    require,
    split_overrides,
)
from mmjax.convert.mapping import Rule, layer_norm_rules, linear_rules
from mmjax.encoders.regions import RegionEmbeddings
from mmjax.encoders.text import Bert
from mmjax.models.visualbert import VisualBertModel
from mmjax.models.visualbert_heads import (
    VisualBertForPreTraining,
    VisualBertForQuestionAnswering,
    VisualBertForVisualReasoning,
)

WHERE = "VisualBertConfig"


def base_rules(model: VisualBertModel, hf: str = "", mm: str = "") -> list[Rule]:
    """VisualBertModel at `{hf}` (e.g. "visual_bert.") <-> models.VisualBertModel at `{mm}` (e.g. "visual_bert/")."""
    bert = model.bert
    rules = [
        *bert_embedding_rules(f"{hf}embeddings", f"{mm}bert/embeddings"),
        *linear_rules(f"{hf}embeddings.visual_projection", f"{mm}visual/projection"),
        Rule(f"{hf}embeddings.visual_token_type_embeddings.weight", f"{mm}visual/type_embed/embedding"),
        Rule(f"{hf}embeddings.visual_position_embeddings.weight", f"{mm}visual/pos_embed/embedding"),
        *bert_encoder_rules(f"{hf}encoder", f"{mm}bert/encoder", bert.depth),
    ]
    if bert.add_pooler:
        rules += linear_rules(f"{hf}pooler.dense", f"{mm}bert/pooler")
    return rules


def pretraining_rules(model: VisualBertForPreTraining) -> list[Rule]:
    rules = [
        *base_rules(model.visual_bert, "visual_bert.", "visual_bert/"),
        *linear_rules("cls.predictions.transform.dense", "mlm/transform"),
        *layer_norm_rules("cls.predictions.transform.LayerNorm", "mlm/ln"),
        Rule("cls.predictions.bias", "mlm/bias"),
        *linear_rules("cls.seq_relationship", "sentence_image"),
    ]
    if not model.tie_word_embeddings:
        rules += linear_rules("cls.predictions.decoder", "mlm/decoder")
    return rules


def classifier_rules(model) -> list[Rule]:
    return [*base_rules(model.visual_bert, "visual_bert.", "visual_bert/"), *linear_rules("cls", "classifier")]


def build_base(config: dict, dtype, param_dtype, overrides: dict, parts: dict | None = None) -> VisualBertModel:
    """VisualBertConfig dict -> VisualBertModel computing exactly what Hugging Face's does (dropout rates kept)."""
    if config.get("bypass_transformer"):
        raise ValueError(f"{WHERE}.bypass_transformer=True is not supported (only the single-stream form)")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{WHERE}.position_embedding_type={config['position_embedding_type']!r} is not supported")
    routed = split_overrides(
        overrides, {"": VisualBertModel, "bert": Bert, "visual": RegionEmbeddings, **(parts or {})}
    )
    width = require(config, "hidden_size", WHERE)
    max_length = config.get("max_position_embeddings", 512)
    type_vocab_size = config.get("type_vocab_size", 2)
    eps = config.get("layer_norm_eps", 1e-12)
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    bert = Bert(
        vocab_size=require(config, "vocab_size", WHERE),
        width=width,
        depth=require(config, "num_hidden_layers", WHERE),
        num_heads=require(config, "num_attention_heads", WHERE),
        mlp_dim=require(config, "intermediate_size", WHERE),
        max_length=max_length,
        type_vocab_size=type_vocab_size,
        activation=activation_from_hf(config.get("hidden_act", "gelu"), WHERE),
        layer_norm_eps=eps,
        dropout_rate=config.get("hidden_dropout_prob", 0.1),
        attention_dropout_rate=config.get("attention_probs_dropout_prob", 0.1),
        **{**kw, **routed["bert"]},
    )
    visual = RegionEmbeddings(
        width=width,
        feature_dim=config.get("visual_embedding_dim", 512),
        max_length=max_length,
        type_vocab_size=type_vocab_size,
        layer_norm_eps=eps,
        **{**kw, **routed["visual"]},
    )
    return VisualBertModel(bert=bert, visual=visual, **routed[""])


def _num_labels(config: dict) -> int:
    # config.json stores id2label, not num_labels; transformers' default is two labels.
    return len(config.get("id2label") or {}) or config.get("num_labels", 2)


def _head_builder(cls, **fields_from_config):
    def build(config: dict, dtype, param_dtype, overrides: dict):
        overrides = dict(overrides)
        head_fields = {k: overrides.pop(k) for k in list(overrides) if k in cls.__dataclass_fields__}
        base = build_base(config, dtype, param_dtype, overrides)
        fields = {name: get(config) for name, get in fields_from_config.items()}
        return cls(visual_bert=base, **{**fields, **head_fields})

    return build


def export_base_config(model: VisualBertModel) -> dict:
    bert, visual = model.bert, model.visual
    name = type(model).__name__
    refuse_unless(
        visual.image_tower is None,
        name,
        "visual.image_tower",
        type(visual.image_tower).__name__,
        "Hugging Face VisualBERT takes precomputed region features only",
    )
    refuse_unless(not visual.use_boxes, name, "visual.use_boxes", True, "Hugging Face VisualBERT has no box input")
    refuse_unless(not visual.normalize, name, "visual.normalize", True, "the visual tokens use the text LayerNorm")
    refuse_unless(visual.feature_dim is not None, name, "visual.feature_dim", None, "visual_embedding_dim is needed")
    for field in ("max_length", "type_vocab_size"):
        refuse_unless(
            getattr(visual, field) == getattr(bert, field),
            name,
            f"visual.{field}",
            getattr(visual, field),
            f"Hugging Face uses one value for text and visual tokens (bert.{field}={getattr(bert, field)!r})",
        )
    return {
        "architectures": ["VisualBertModel"],
        "model_type": "visual_bert",
        **bert_config_fields(bert),
        "visual_embedding_dim": visual.feature_dim,
        "bypass_transformer": False,
        "special_visual_initialize": True,
    }


def _export_head(architecture: str, extra):
    def export(model) -> dict:
        refuse_unless(
            model.visual_bert.bert.add_pooler,
            architecture,
            "visual_bert.bert.add_pooler",
            False,
            f"{architecture} always has a pooler",
        )
        return {**export_base_config(model.visual_bert), "architectures": [architecture], **extra(model)}

    return export


def _labels(model) -> dict:
    return label_maps(model.num_labels)


def _example_inputs(base: VisualBertModel) -> dict:
    return {
        "input_ids": jnp.zeros((1, 2), jnp.int32),
        "visual_embeds": jnp.zeros((1, 1, base.visual.feature_dim or 1), jnp.float32),
    }


def normalize_key(key: str) -> str:
    """TF-era LayerNorm gamma/beta -> weight/bias."""
    if key.endswith("LayerNorm.gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith("LayerNorm.beta"):
        return key[: -len("beta")] + "bias"
    return key


def _normalize_base_key(key: str) -> str:
    # A task checkpoint loads into the base model with its heads reported as unexpected keys, never dropped.
    return normalize_key(key.removeprefix("visual_bert."))


CONVERTERS = (
    HFConverter(
        architecture="VisualBertModel",
        model_type="visual_bert",
        model_class=VisualBertModel,
        build_model=build_base,
        export_config=export_base_config,
        rules=base_rules,
        example_inputs=_example_inputs,
        ignored_keys=frozenset({"embeddings.position_ids"}),
        normalize_key=_normalize_base_key,
    ),
    HFConverter(
        architecture="VisualBertForPreTraining",
        model_type="visual_bert",
        model_class=VisualBertForPreTraining,
        build_model=_head_builder(
            VisualBertForPreTraining, tie_word_embeddings=lambda c: c.get("tie_word_embeddings", True)
        ),
        export_config=_export_head(
            "VisualBertForPreTraining", lambda m: {"tie_word_embeddings": m.tie_word_embeddings}
        ),
        rules=pretraining_rules,
        example_inputs=lambda m: _example_inputs(m.visual_bert),
        ignored_keys=frozenset({"visual_bert.embeddings.position_ids"}),
        normalize_key=normalize_key,
    ),
    *(
        HFConverter(
            architecture=cls.__name__,
            model_type="visual_bert",
            model_class=cls,
            build_model=_head_builder(cls, num_labels=_num_labels),
            export_config=_export_head(cls.__name__, _labels),
            rules=classifier_rules,
            example_inputs=lambda m: _example_inputs(m.visual_bert),
            ignored_keys=frozenset({"visual_bert.embeddings.position_ids"}),
            normalize_key=normalize_key,
        )
        for cls in (VisualBertForQuestionAnswering, VisualBertForVisualReasoning)
    ),
)
