"""Task heads on a pooled vector [B, D].

`HEADS` is the one table that names heads for configs: build_head('answer', num_outputs=3129).

Parameter names (stable):
  ClassificationHead: `pre_logits` (kernel [embed, mlp], only with hidden_dim), `logits` (kernel [*, vocab]).
  AnswerHead:         `dense` (kernel [embed, mlp]), `ln`, `logits` (kernel [mlp, vocab]).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax.layers import dense, get_activation, layer_norm

Dtype = jnp.dtype | type


class ClassificationHead(nn.Module):
    """pooled [B, D] -> logits [B, num_outputs] (float32): dropout, an optional hidden layer, a linear layer.

    The logits kernel starts at zero (big_vision's head init), so a new head starts at uniform predictions and
    does not disturb pretrained towers in the first steps.
    """

    num_outputs: int
    hidden_dim: int | None = None
    activation: str = "gelu"
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.hidden_dim:
            x = get_activation(self.activation)(dense(self.hidden_dim, ("embed", "mlp"), name="pre_logits", **kw)(x))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        logits = dense(self.num_outputs, ("mlp", "vocab"), kernel_init=nn.initializers.zeros, name="logits", **kw)(x)
        return logits.astype(jnp.float32)


class AnswerHead(nn.Module):
    """VQA answer head (LXMERT / VisualBERT-pretraining form): pooled [B, D] -> logits [B, num_outputs] (float32).

    Linear(D, hidden_dim or 2D) -> activation -> LayerNorm -> dropout -> Linear(num_outputs). The logits are
    scored per answer with sigmoid binary cross-entropy against soft answer scores (losses.py), not a softmax.
    """

    num_outputs: int
    hidden_dim: int | None = None
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = dense(self.hidden_dim or 2 * x.shape[-1], ("embed", "mlp"), name="dense", **kw)(x)
        h = layer_norm(self.layer_norm_eps, name="ln", **kw)(get_activation(self.activation)(h))
        h = nn.Dropout(self.dropout_rate)(h, deterministic=not train)
        return dense(self.num_outputs, ("mlp", "vocab"), name="logits", **kw)(h).astype(jnp.float32)


HEADS: dict[str, type[nn.Module]] = {"classification": ClassificationHead, "answer": AnswerHead}


def build_head(kind: str, num_outputs: int, **kwargs) -> nn.Module:
    """A head by its table name; kwargs are the head's fields (and `name`, the submodule name)."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; available: {sorted(HEADS)}")
    return HEADS[kind](num_outputs=num_outputs, **kwargs)
