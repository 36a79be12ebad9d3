"""The one structure every encoder and fusion block returns, so any tower can feed any fusion."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Encoded:
    """Output of an encoder or fusion block.

    tokens: [B, T, D] per-token features.
    mask:   [B, T] bool, True where a token is real (False for padding).
    pooled: [B, D'] one vector per example (D' may differ from D, e.g. BERT's pooler or a projection).
    """

    tokens: jax.Array
    mask: jax.Array
    pooled: jax.Array


def masked_mean(tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over real tokens only: [B, T, D], [B, T] -> [B, D]. An all-padding row gives zeros, not NaN."""
    weights = mask.astype(tokens.dtype)[..., None]
    total = jnp.sum(tokens * weights, axis=1)
    count = jnp.maximum(jnp.sum(weights, axis=1), 1.0)
    return total / count
