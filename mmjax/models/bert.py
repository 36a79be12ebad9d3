"""BertModel: the Bert text tower with Hugging Face BertModel's argument and output names."""

from __future__ import annotations

import flax.linen as nn
import jax

from mmjax.encoders.text import Bert


class BertModel(nn.Module):
    """input_ids [B, T] (+ attention_mask, token_type_ids, position_ids) -> dict with

    last_hidden_state [B, T, D], pooler_output [B, D] (tanh dense over the first token, when the model has a
    pooler), pooled [B, D] (the tower's own pooling, `bert.pool`), attention_mask [B, T] bool.
    Parameters live under `bert` (see encoders.text.Bert).
    """

    bert: Bert

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, *, train=False):
        enc = self.bert(input_ids, attention_mask, token_type_ids, position_ids, train=train)
        out = {"last_hidden_state": enc.tokens, "pooled": enc.pooled, "attention_mask": enc.mask}
        if self.bert.add_pooler:
            out["pooler_output"] = jax.nn.tanh(self.bert.pooler(enc.tokens[:, 0]))
        return out
