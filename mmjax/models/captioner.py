"""Image captioning: any image tower + a transformer decoder that cross-attends to the image tokens.

Parameter names (stable): `image_tower`, `token_embed` (TokenEmbed [vocab, width]), `pos_embed` (PositionEmbed
[max_length, width]), `decoder` (layers.Decoder: layer_i/{ln_1, self_attn, ln_2, cross_attn, ln_3, mlp},
ln_final), `lm_head` (kernel [width, vocab]; only with tie_embeddings=False).

Sequence convention: decoder inputs are [bos, w_1, ..., w_n, eos, pad, ...]; logits[:, t] predicts input_ids[:, t+1]
(the captioning loss shifts). Decoding returns generated tokens without the bos: [w_1, ..., w_n, eos, pad, ...].

`greedy_decode` and `beam_search` are jitted functions of (model, variables, pixel_values); the model is a static
argument, so each model configuration compiles once per batch shape.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.layers import Encoded, PositionEmbed, TokenEmbed, dense
from mmjax.layers.decoder import Decoder

Dtype = jnp.dtype | type


class Captioner(nn.Module):
    """pixel_values [B, H, W, C], input_ids [B, T] (+ attention_mask [B, T]) -> logits [B, T, vocab] (float32).

    image_tower: any module mapping pixel_values to an Encoded (ViT, ResNet, ...); its tokens (and mask) are the
      memory the decoder cross-attends to, at the tower's own width.
    max_length: the position table size, the longest teacher-forcing input and the longest generated caption.
    """

    image_tower: nn.Module
    vocab_size: int
    max_length: int = 32
    width: int = 512
    num_layers: int = 6
    num_heads: int = 8
    mlp_dim: int | None = None
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    tie_embeddings: bool = True
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = 0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.token_embed = TokenEmbed(self.vocab_size, self.width, **kw)
        self.pos_embed = PositionEmbed(self.max_length, **kw)
        self.embed_dropout = nn.Dropout(self.dropout_rate)
        self.decoder = Decoder(
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim or 4 * self.width,
            max_length=self.max_length,
            activation=self.activation,
            layer_norm_eps=self.layer_norm_eps,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            attention_impl=self.attention_impl,
            **kw,
        )
        if not self.tie_embeddings:
            self.lm_head = dense(self.vocab_size, ("embed", "vocab"), **kw)

    def encode(self, pixel_values, *, train: bool = False) -> Encoded:
        """pixel_values [B, H, W, C] -> the image tower's Encoded (the decoder's memory)."""
        return self.image_tower(pixel_values, train=train)

    def decode(self, input_ids, memory: Encoded, attention_mask=None, *, index=None, train: bool = False):
        """input_ids [B, T] -> logits [B, T, vocab] (float32), cross-attending to memory.tokens [B, Tm, Dm].

        index=None: the whole sequence at positions 0..T-1 (teacher forcing). index = an int32 scalar: cache mode,
        input_ids are the tokens at positions [index, index + T); apply with mutable=['cache'].
        """
        x = self.token_embed(input_ids)
        if index is None:
            x = self.pos_embed(x)
        else:
            x = self.pos_embed(x, position_ids=index + jnp.arange(input_ids.shape[1])[None])
        x = self.embed_dropout(x, deterministic=not train)
        x = self.decoder(x, memory.tokens, attention_mask, memory.mask, index=index, deterministic=not train)
        logits = self.token_embed.attend(x) if self.tie_embeddings else self.lm_head(x)
        return logits.astype(jnp.float32)

    def __call__(self, pixel_values, input_ids, attention_mask=None, *, train: bool = False):
        """Teacher forcing: -> logits [B, T, vocab]; logits[:, t] scores input_ids[:, t + 1]."""
        return self.decode(input_ids, self.encode(pixel_values, train=train), attention_mask, train=train)


def decoding_log_probs(model: Captioner, logits):
    """logits [..., V] -> log-probabilities [..., V] over the tokens decoding may emit (never bos or pad)."""
    logits = logits.astype(jnp.float32).at[..., model.pad_id].set(-jnp.inf).at[..., model.bos_id].set(-jnp.inf)
    return jax.nn.log_softmax(logits, axis=-1)


def _decoding_length(model: Captioner, max_length: int | None) -> int:
    length = model.max_length if max_length is None else max_length
    if not 1 <= length <= model.max_length:
        raise ValueError(f"max_length must be in [1, {model.max_length}] (the model's max_length), got {length}")
    return length


def _stepper(model: Captioner, variables, memory: Encoded, batch: int, length: int, use_cache: bool):
    """-> (cache, step) with step(prev_tokens [N], t, generated [N, L], cache) -> (log-probs [N, V], cache).

    With the cache, only the previous token runs through the decoder. Without it, the whole prefix
    [bos, generated[:, :L-1]] is recomputed and position t read off; later positions cannot leak into position t
    through the causal mask. That slow path is the reference the cached one must match.
    """
    variables = {k: v for k, v in variables.items() if k != "cache"}
    bos = jnp.full((batch, 1), model.bos_id, jnp.int32)
    if not use_cache:

        def step(prev, t, generated, cache):
            inputs = jnp.concatenate([bos, generated[:, : length - 1]], axis=1)
            logits = model.apply(variables, inputs, memory, method=Captioner.decode)
            return decoding_log_probs(model, jax.lax.dynamic_index_in_dim(logits, t, 1, keepdims=False)), cache

        return None, step

    # The first cache-mode call creates the cache and stores the memory's cross-attention keys/values.
    _, state = model.apply(variables, bos, memory, index=0, method=Captioner.decode, mutable=["cache"])

    def step(prev, t, generated, cache):
        logits, state = model.apply(
            {**variables, "cache": cache},
            prev[:, None],
            memory,
            index=t,
            method=Captioner.decode,
            mutable=["cache"],
        )
        return decoding_log_probs(model, logits[:, 0]), state["cache"]

    return state["cache"], step


@functools.partial(jax.jit, static_argnames=("model", "max_length", "use_cache"))
def greedy_decode(model: Captioner, variables, pixel_values, *, max_length: int | None = None, use_cache=True):
    """-> tokens [B, max_length] int32: the argmax token each step; after eos only pad.

    Stops early (lax.while_loop) once every sequence has emitted eos; unfilled positions stay pad.
    """
    length = _decoding_length(model, max_length)
    memory = model.apply(variables, pixel_values, method=Captioner.encode)
    batch = memory.tokens.shape[0]
    cache, step = _stepper(model, variables, memory, batch, length, use_cache)

    def body(state):
        t, prev, tokens, finished, cache = state
        log_probs, cache = step(prev, t, tokens, cache)
        token = jnp.where(finished, model.pad_id, jnp.argmax(log_probs, axis=-1).astype(jnp.int32))
        tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, t))
        return t + 1, token, tokens, finished | (token == model.eos_id), cache

    def cond(state):
        t, _, _, finished, _ = state
        return (t < length) & ~jnp.all(finished)

    init = (
        jnp.int32(0),
        jnp.full((batch,), model.bos_id, jnp.int32),
        jnp.full((batch, length), model.pad_id, jnp.int32),
        jnp.zeros((batch,), bool),
        cache,
    )
    return jax.lax.while_loop(cond, body, init)[2]


def length_penalty(lengths, alpha: float):
    """GNMT length penalty ((5 + length) / 6) ** alpha; alpha=0 ranks by total log-probability."""
    return ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** alpha


@functools.partial(jax.jit, static_argnames=("model", "beam_size", "max_length", "alpha"))
def beam_search(
    model: Captioner, variables, pixel_values, *, beam_size: int = 4, max_length: int | None = None, alpha=0.0
):
    """-> (tokens [B, beam_size, max_length] int32, scores [B, beam_size]), best beam first.

    scores are sum(log p) / length_penalty(length, alpha), length counting the eos. Each step keeps the
    beam_size best continuations of all beams, ranked by that normalized score. A beam that has emitted eos keeps
    its slot and its score (its one continuation is pad), so beam_size=1 is exactly greedy decoding; the search
    stops when every beam has finished or max_length tokens were generated.
    """
    length = _decoding_length(model, max_length)
    if beam_size > model.vocab_size - 2:
        raise ValueError(f"beam_size {beam_size} exceeds the {model.vocab_size - 2} tokens decoding can emit")
    k, vocab = beam_size, model.vocab_size
    memory = model.apply(variables, pixel_values, method=Captioner.encode)
    batch = memory.tokens.shape[0]  # pixel_values may be a pair (audio waveforms, lengths)
    memory = jax.tree.map(lambda a: jnp.repeat(a, k, axis=0), memory)  # [B * K, ...], beam-major per example
    cache, step = _stepper(model, variables, memory, batch * k, length, use_cache=True)
    pad_only = jnp.where(jnp.arange(vocab) == model.pad_id, 0.0, -jnp.inf)

    def body(state):
        t, prev, tokens, raw, lengths, finished, cache = state
        log_probs, cache = step(prev.reshape(-1), t, tokens.reshape(batch * k, length), cache)
        log_probs = jnp.where(finished[..., None], pad_only, log_probs.reshape(batch, k, vocab))
        cand_raw = (raw[..., None] + log_probs).reshape(batch, k * vocab)
        cand_len = jnp.repeat(jnp.where(finished, lengths, t + 1), vocab, axis=1)
        _, top = jax.lax.top_k(cand_raw / length_penalty(cand_len, alpha), k)  # [B, K]
        beam, token = top // vocab, (top % vocab).astype(jnp.int32)
        take = lambda a: jnp.take_along_axis(a, beam, axis=1)
        tokens = jnp.take_along_axis(tokens, beam[..., None], axis=1)
        tokens = jax.lax.dynamic_update_slice(tokens, token[..., None], (0, 0, t))
        was_finished = take(finished)
        lengths = jnp.where(was_finished, take(lengths), t + 1)
        finished = was_finished | (token == model.eos_id)
        flat = (jnp.arange(batch)[:, None] * k + beam).reshape(-1)
        cache = _reorder_cache(cache, flat)
        return t + 1, token, tokens, jnp.take_along_axis(cand_raw, top, axis=1), lengths, finished, cache

    def cond(state):
        return (state[0] < length) & ~jnp.all(state[5])

    init = (
        jnp.int32(0),
        jnp.full((batch, k), model.bos_id, jnp.int32),
        jnp.full((batch, k, length), model.pad_id, jnp.int32),
        # all beams start as the same bos; only beam 0 is live at first, so the first step fans out
        jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf), (batch, 1)),
        jnp.zeros((batch, k), jnp.int32),
        jnp.zeros((batch, k), bool),
        cache,
    )
    _, _, tokens, raw, lengths, _, _ = jax.lax.while_loop(cond, body, init)
    scores = raw / length_penalty(lengths, alpha)
    order = jnp.argsort(-scores, axis=1)
    return jnp.take_along_axis(tokens, order[..., None], axis=1), jnp.take_along_axis(scores, order, axis=1)


def _reorder_cache(cache, flat_index):
    """Gather the self-attention caches [B * K, ...] to follow the surviving beams.

    Cross-attention keys/values are the same for every beam of an example, so they are left as they are.
    """

    def reorder(path, leaf):
        name = getattr(path[-1], "key", None)
        return leaf if name in ("cross_key", "cross_value") else jnp.take(leaf, flat_index, axis=0)

    return jax.tree_util.tree_map_with_path(reorder, cache)
