"""Text towers: the CLIP text transformer (causal, pooled at end-of-text) and BERT (bidirectional, post-LN).

Parameter names (stable; converters depend on them):
  TextTransformer: `token_embed` (embedding), `pos_embed` (embedding), `encoder`, `ln_final`, `head` (kernel,
                   bias; only with projection_dim, SigLIP's).
  Bert:            `embeddings` {token_embed, pos_embed, type_embed, ln}, `encoder`, `pooler` (kernel, bias).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.layers import (
    Encoded,
    PositionEmbed,
    TokenEmbed,
    TypeEmbed,
    causal_mask,
    combine_masks,
    dense,
    encoder_like,
    layer_norm,
    masked_mean,
    padding_mask,
)

Dtype = jnp.dtype | type


def _as_mask(input_ids, attention_mask):
    if attention_mask is None:
        return jnp.ones(input_ids.shape, bool)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}"
        )
    return attention_mask.astype(bool)


def _check_ids(input_ids, max_length: int, tower: str):
    if input_ids.ndim != 2:
        raise ValueError(f"{tower} expects input_ids [B, T], got shape {tuple(input_ids.shape)}")
    if input_ids.shape[1] > max_length:
        raise ValueError(f"{tower} takes at most {max_length} tokens, got {input_ids.shape[1]}")


def eot_positions(input_ids, mask, pool: str, eos_token_id: int | None):
    """Index of the token that represents the sentence, per example ([B, T] -> [B]).

    'argmax': the largest id (OpenAI CLIP: end-of-text has the largest id in its vocabulary);
    'eos':    the first occurrence of eos_token_id (falls back to the last real token when absent);
    'last':   the last real (unmasked) token;
    'last_position': the final position T-1 whatever the mask (SigLIP, which pads to a fixed length).
    """
    last = jnp.maximum(jnp.sum(mask, axis=1) - 1, 0)
    if pool == "argmax":
        return jnp.argmax(input_ids, axis=-1)
    if pool == "eos":
        if eos_token_id is None:
            raise ValueError("pool='eos' needs eos_token_id")
        is_eos = input_ids == eos_token_id
        return jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1), last)
    if pool == "last":
        return last
    if pool == "last_position":
        return jnp.full(input_ids.shape[:1], input_ids.shape[1] - 1)
    raise ValueError(f"unknown pool {pool!r}; expected 'argmax', 'eos', 'last', 'last_position' or 'mean'")


class TextTransformer(nn.Module):
    """CLIP's text tower: input_ids [B, T] (+ attention_mask) -> Encoded(tokens [B, T, D], mask, pooled [B, D]).

    Causal self-attention (padding keys masked too), a final LayerNorm over every token, and the pooled vector is
    the token chosen by `pool` ('argmax' | 'eos' | 'last' | 'last_position' | 'mean'). SigLIP's text tower is this
    with causal=False, pool='last_position' and a `head`.

    projection_dim: width of a Linear with bias (`head`) applied to the pooled vector (SigLIP); None: no head
    """

    vocab_size: int = 49408
    width: int = 512
    depth: int = 12
    num_heads: int = 8
    mlp_dim: int | None = None
    max_length: int = 77
    activation: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    causal: bool = True
    pool: str = "argmax"
    eos_token_id: int | None = None
    projection_dim: int | None = None
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    remat: bool = False
    scan: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, *, train: bool = False) -> Encoded:
        _check_ids(input_ids, self.max_length, "TextTransformer")
        mask = _as_mask(input_ids, attention_mask)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = TokenEmbed(self.vocab_size, self.width, name="token_embed", **kw)(input_ids)
        x = PositionEmbed(self.max_length, 0.01, name="pos_embed", **kw)(x)
        attn_mask = padding_mask(mask)
        if self.causal:
            attn_mask = combine_masks(attn_mask, causal_mask(input_ids.shape[1]))
        x = encoder_like(self, pre_norm=True, name="encoder")(x, attn_mask, not train)
        x = layer_norm(self.layer_norm_eps, name="ln_final", **kw)(x)
        if self.pool == "mean":
            pooled = masked_mean(x, mask)
        else:
            idx = eot_positions(input_ids, mask, self.pool, self.eos_token_id)
            pooled = jnp.take_along_axis(x, idx[:, None, None], axis=1)[:, 0]
        if self.projection_dim is not None:
            pooled = dense(self.projection_dim, ("embed", "mlp"), name="head", **kw)(pooled)
        return Encoded(tokens=x, mask=mask, pooled=pooled)


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout: ids [B, T] -> [B, T, D].

    Separate from Bert so single-stream models (VisualBERT) can embed text the same way and concatenate.
    """

    vocab_size: int
    width: int
    max_length: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids=None, position_ids=None, *, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = TokenEmbed(self.vocab_size, self.width, name="token_embed", **kw)(input_ids)
        x = PositionEmbed(self.max_length, name="pos_embed", **kw)(x, position_ids=position_ids)
        x = x + TypeEmbed(self.type_vocab_size, self.width, name="type_embed", **kw)(token_type_ids)
        x = layer_norm(self.layer_norm_eps, name="ln", **kw)(x)
        return nn.Dropout(self.dropout_rate)(x, deterministic=not train)


class Bert(nn.Module):
    """BERT: input_ids [B, T] (+ attention_mask, token_type_ids) -> Encoded(tokens [B, T, D], mask, pooled).

    Post-LN blocks with bidirectional attention. `pool` picks the pooled vector: 'pooler' (tanh dense over the
    first token, Hugging Face's pooler_output), 'cls' (first token), 'mean' (mean of real tokens, as
    sentence-transformers models such as MiniLM are trained).
    """

    vocab_size: int = 30522
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int | None = None
    max_length: int = 512
    type_vocab_size: int = 2
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    pool: str = "pooler"
    add_pooler: bool = True
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    remat: bool = False
    scan: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.pool == "pooler" and not self.add_pooler:
            raise ValueError("pool='pooler' needs add_pooler=True")
        self.embeddings = BertEmbeddings(
            self.vocab_size,
            self.width,
            self.max_length,
            self.type_vocab_size,
            self.layer_norm_eps,
            self.dropout_rate,
            **kw,
        )
        self.encoder = encoder_like(self, pre_norm=False)
        if self.add_pooler:
            self.pooler = dense(self.width, ("embed", "mlp"), name="pooler", **kw)

    def __call__(
        self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, *, train: bool = False
    ) -> Encoded:
        _check_ids(input_ids, self.max_length, "Bert")
        mask = _as_mask(input_ids, attention_mask)
        x = self.embeddings(input_ids, token_type_ids, position_ids, train=train)
        return self.encode_embeddings(x, mask, train=train)

    def encode_embeddings(self, x, mask, *, train: bool = False) -> Encoded:
        """Run the transformer and pooling on already-embedded tokens [B, T, D] with a [B, T] bool mask."""
        x = self.encoder(x, padding_mask(mask), not train)
        return Encoded(tokens=x, mask=mask, pooled=self.pool_tokens(x, mask))

    def pool_tokens(self, x, mask):
        # The pooler runs whenever it exists so its weights are always part of the model (a checkpoint that has
        # them loads under any `pool`), even when another pooling is selected.
        pooler_output = jax.nn.tanh(self.pooler(x[:, 0])) if self.add_pooler else None
        if self.pool == "pooler":
            return pooler_output
        if self.pool == "mean":
            return masked_mean(x, mask)
        if self.pool == "cls":
            return x[:, 0]
        raise ValueError(f"unknown pool {self.pool!r}; expected 'pooler', 'cls' or 'mean'")
