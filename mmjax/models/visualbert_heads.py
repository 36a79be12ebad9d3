"""Task heads on VisualBertModel, with Hugging Face's output names.

Every head takes the VisualBertModel's inputs (input_ids, attention_mask, token_type_ids, position_ids,
visual_embeds, visual_attention_mask, visual_token_type_ids, image_text_alignment, boxes, pixel_values) and
returns the model's outputs plus its own. Logits are float32; losses live in mmjax/losses.py (masked LM and
sentence-image cross-entropy for pretraining, soft-score binary cross-entropy for VQA).

Parameter names (stable): `visual_bert` (VisualBertModel), and
  VisualBertForPreTraining:  `mlm` {transform, ln, bias, decoder (untied only)}, `sentence_image` (kernel [D, 2])
  VisualBertForQuestionAnswering / VisualBertForClassification / VisualBertForVisualReasoning:
                             `classifier` (kernel [D, num_labels])
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax.layers import dense, get_activation, layer_norm
from mmjax.models.visualbert import VisualBertModel

Dtype = jnp.dtype | type


class MaskedLMHead(nn.Module):
    """hidden [B, T, D] -> vocabulary logits [B, T, V] (float32): dense -> activation -> LayerNorm -> decoder.

    Tied (BERT's default): the decoder is the word-embedding table `embedding` [V, D] plus `bias` [V].
    Untied: its own `decoder` Dense (kernel [D, V], bias [V]); `bias` is then unused, exactly as in Hugging
    Face's untied head, and kept only so such checkpoints round-trip.
    """

    vocab_size: int
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    tie_word_embeddings: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, embedding=None):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = dense(x.shape[-1], ("embed", "mlp"), name="transform", **kw)(x)
        h = layer_norm(self.layer_norm_eps, name="ln", **kw)(get_activation(self.activation)(h))
        bias = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
            (self.vocab_size,),
            self.param_dtype,
        )
        if self.tie_word_embeddings:
            if embedding is None:
                raise ValueError("a tied MaskedLMHead needs the word-embedding table")
            logits = jnp.einsum("...d,vd->...v", h, jnp.asarray(embedding, self.dtype)) + jnp.asarray(bias, self.dtype)
        else:
            logits = dense(self.vocab_size, ("embed", "vocab"), name="decoder", **kw)(h)
        return logits.astype(jnp.float32)


class VisualBertForPreTraining(nn.Module):
    """-> outputs of VisualBertModel + prediction_logits [B, T+R, V] (masked LM over every position) and
    seq_relationship_logits [B, 2] (sentence-image prediction: does the caption match the image; 0 = match)."""

    visual_bert: VisualBertModel
    tie_word_embeddings: bool = True

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, *, train: bool = False, **inputs) -> dict:
        bert = self.visual_bert.bert
        if not bert.add_pooler:
            raise ValueError("VisualBertForPreTraining needs bert.add_pooler=True (sentence-image prediction)")
        out = self.visual_bert(input_ids, attention_mask, train=train, **inputs)
        kw = dict(dtype=bert.dtype, param_dtype=bert.param_dtype)
        table = self.visual_bert.text_embedding_params()["token_embed"]["embedding"]
        mlm = MaskedLMHead(
            bert.vocab_size, bert.activation, bert.layer_norm_eps, self.tie_word_embeddings, name="mlm", **kw
        )
        out["prediction_logits"] = mlm(out["last_hidden_state"], table if self.tie_word_embeddings else None)
        seq = dense(2, ("embed", "vocab"), name="sentence_image", **kw)(out["pooler_output"])
        out["seq_relationship_logits"] = seq.astype(jnp.float32)
        return out


def _classify(module: nn.Module, pooled, num_labels: int, train: bool):
    bert = module.visual_bert.bert
    x = nn.Dropout(bert.dropout_rate)(pooled, deterministic=not train)
    kw = dict(dtype=bert.dtype, param_dtype=bert.param_dtype)
    return dense(num_labels, ("embed", "vocab"), name="classifier", **kw)(x).astype(jnp.float32)


class VisualBertForQuestionAnswering(nn.Module):
    """VQA: -> outputs + logits [B, num_labels], one score per answer (trained with soft-score BCE).

    The answer is read from the last text token before [SEP], at position sum(attention_mask) - 2, as the
    original code and Hugging Face do; this assumes right-padded text ([CLS] ... [SEP] [PAD] ...).
    """

    visual_bert: VisualBertModel
    num_labels: int

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, *, train: bool = False, **inputs) -> dict:
        out = self.visual_bert(input_ids, attention_mask, train=train, **inputs)
        n_text = input_ids.shape[1] if attention_mask is None else attention_mask.astype(jnp.int32).sum(1)
        index = jnp.maximum(jnp.broadcast_to(n_text - 2, input_ids.shape[:1]), 0)
        token = jnp.take_along_axis(out["last_hidden_state"], index[:, None, None], axis=1)[:, 0]
        out["logits"] = _classify(self, token, self.num_labels, train)
        return out


class VisualBertForClassification(nn.Module):
    """Plain classification of a (text, image) pair: the pooled vector (bert.pool: pooler by default) ->
    dropout -> linear -> outputs + logits [B, num_labels]."""

    visual_bert: VisualBertModel
    num_labels: int = 2

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, *, train: bool = False, **inputs) -> dict:
        out = self.visual_bert(input_ids, attention_mask, train=train, **inputs)
        out["logits"] = _classify(self, out["pooled"], self.num_labels, train)
        return out


# Visual inputs that may carry an image axis for image pairs: name -> rank without it.
_PAIR_INPUTS = {"visual_embeds": 3, "visual_attention_mask": 2, "visual_token_type_ids": 2, "boxes": 3}


class VisualBertForVisualReasoning(nn.Module):
    """NLVR2: is the sentence true of the image pair? -> outputs + logits [B, num_labels] from pooler_output.

    Region inputs may come per image, visual_embeds [B, I, R, D_v] (masks, token types [B, I, R], boxes
    [B, I, R, 4]); the I images are concatenated into one visual sequence of I*R tokens, the form Hugging Face's
    VisualBertForVisualReasoning takes. Grid mode takes pixel_values [B, I, H, W, C]. Pass
    visual_token_type_ids to tell the images apart (default: type 1 for every visual token, as Hugging Face).
    """

    visual_bert: VisualBertModel
    num_labels: int = 2

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, *, train: bool = False, **inputs) -> dict:
        if not self.visual_bert.bert.add_pooler:
            raise ValueError("VisualBertForVisualReasoning needs bert.add_pooler=True (it classifies pooler_output)")
        for name, rank in _PAIR_INPUTS.items():
            x = inputs.get(name)
            if x is not None and x.ndim == rank + 1:
                inputs[name] = x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])
        alignment = inputs.get("image_text_alignment")
        if alignment is not None and alignment.ndim == 4:
            inputs["image_text_alignment"] = alignment.reshape(alignment.shape[0], -1, alignment.shape[-1])
        out = self.visual_bert(input_ids, attention_mask, train=train, **inputs)
        out["logits"] = _classify(self, out["pooler_output"], self.num_labels, train)
        return out
