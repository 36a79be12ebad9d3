"""MBT attention bottlenecks (Nagrani et al., 2021): modalities exchange information only through a few shared
latent tokens.

Parameter names (stable):
  `proj_{m}`        input projection, only for modalities whose token width differs from `width`;
  `encoder_{m}`     layers.Encoder with the first `fusion_layer` layers of modality m (absent when 0);
  `bottleneck`      [n_bottlenecks, width] the learned initial bottleneck tokens (absent when n_bottlenecks=0);
  `fusion_{j}_{m}`  layers.Block of modality m in the j-th fusion layer (layer fusion_layer + j);
  `ln_final_{m}`, and `pool_fusion` (LateFusion) with pool='modality'.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax.numpy as jnp

from mmjax.fusion.common import TokenFusion, self_mask
from mmjax.layers import Encoded


class BottleneckFusion(TokenFusion):
    """dict[str, Encoded] -> Encoded(tokens [B, sum T_m, width], mask, pooled). Modality tokens only; the
    bottleneck tokens are internal.

    Layers [0, fusion_layer) run per modality. In each later layer, every modality runs its own Block over
    [its tokens; the bottleneck tokens]; the modalities' updated bottleneck tokens are then averaged into the next
    layer's bottleneck. A modality's tokens never attend to another modality's tokens, so information crosses only
    through the bottleneck, and only from one fusion layer to the next. With n_bottlenecks=0 the modalities are
    independent. The pooled vector defaults to per-modality pooling combined by `combine` (MBT averages the
    modalities' logits; 'sum' of the summaries is the same up to a factor).
    """

    n_bottlenecks: int = 4
    fusion_layer: int = 0
    pool: str = "modality"

    @nn.compact
    def __call__(self, encodings: Mapping[str, Encoded], *, train: bool = False) -> Encoded:
        if not 0 <= self.fusion_layer <= self.num_layers:
            raise ValueError(f"fusion_layer must be in [0, num_layers={self.num_layers}], got {self.fusion_layer}")
        names, tokens, masks, width = self.prepare(encodings)
        if self.fusion_layer > 0:
            for m in names:
                tokens[m] = self.stack(self.fusion_layer, width, f"encoder_{m}")(
                    tokens[m], self_mask(masks[m]), not train
                )
        batch = tokens[names[0]].shape[0]
        n = self.n_bottlenecks
        if n:
            init = self.param(
                "bottleneck",
                nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
                (n, width),
                self.param_dtype,
            )
            shared = jnp.broadcast_to(jnp.asarray(init, self.dtype), (batch, n, width))
        for j in range(self.num_layers - self.fusion_layer):
            updates = []
            for m in names:
                t = tokens[m].shape[1]
                x, mask = tokens[m], masks[m]
                if n:
                    x = jnp.concatenate([x, shared], axis=1)
                    mask = jnp.concatenate([mask, jnp.ones((batch, n), bool)], axis=1)
                y = self.block(width, f"fusion_{j}_{m}")(x, self_mask(mask), not train)
                tokens[m] = y[:, :t]
                updates.append(y[:, t:])
            if n:
                shared = sum(updates[1:], updates[0]) / len(updates)
        tokens = {m: self.final_norm(f"ln_final_{m}")(tokens[m]) for m in names}
        return self.output(names, tokens, masks, train=train)
