"""ASTModel and ASTForAudioClassification: the AST tower with Hugging Face's argument and output names.

Parameter names (stable): `ast` (encoders.AST); the classification model adds `classifier/layernorm` and
`classifier/dense` (kernel [embed, num_labels]), Hugging Face's ASTMLPHead.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax.encoders.audio import AST
from mmjax.layers import dense, layer_norm

Dtype = jnp.dtype | type


class ASTModel(nn.Module):
    """input_values [B, T frames, F mel bins] -> dict(last_hidden_state [B, 2 + N, D] (after the final
    LayerNorm), pooler_output [B, D] (mean of the class and distillation tokens)). Parameters under `ast`."""

    ast: AST

    def __call__(self, input_values, *, train: bool = False) -> dict:
        enc = self.ast(input_values, train=train)
        return {"last_hidden_state": enc.tokens, "pooler_output": enc.pooled}


class ASTClassifierHead(nn.Module):
    """pooled [B, D] -> logits [B, num_labels]: LayerNorm then Dense (Hugging Face's ASTMLPHead)."""

    num_labels: int
    layer_norm_eps: float = 1e-12
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, pooled):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = layer_norm(self.layer_norm_eps, name="layernorm", **kw)(pooled)
        return dense(self.num_labels, ("embed", "vocab"), name="dense", **kw)(x)


class ASTForAudioClassification(nn.Module):
    """input_values [B, T, F] -> dict(logits [B, num_labels], last_hidden_state, pooler_output).

    The head's LayerNorm uses the tower's epsilon, as ASTConfig has one `layer_norm_eps` for both.
    """

    ast: AST
    num_labels: int

    @nn.compact
    def __call__(self, input_values, *, train: bool = False) -> dict:
        enc = self.ast(input_values, train=train)
        head = ASTClassifierHead(
            self.num_labels,
            self.ast.layer_norm_eps,
            dtype=self.ast.dtype,
            param_dtype=self.ast.param_dtype,
            name="classifier",
        )
        logits = head(enc.pooled)
        return {"logits": logits, "last_hidden_state": enc.tokens, "pooler_output": enc.pooled}
