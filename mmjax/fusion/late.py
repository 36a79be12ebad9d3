"""Late fusion: the towers never meet at the token level; their pooled vectors are combined.

Parameter names (stable): `proj_{m}` (kernel [D_m, width]) for each modality m whose pooled width differs from
`width`; `gate` (kernel [M * width, M * width]) for combine='gate'.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.layers import Encoded, dense

Dtype = jnp.dtype | type

COMBINES = ("concat", "sum", "product", "gate")


def modality_order(encodings: Mapping[str, Encoded], modalities: tuple[str, ...] | None) -> tuple[str, ...]:
    """The fixed order modalities are processed in: `modalities` if given (must match the keys), else sorted keys.

    A fixed order keeps parameter names, type ids and the concatenated token layout independent of dict order.
    """
    if modalities is None:
        return tuple(sorted(encodings))
    if set(modalities) != set(encodings) or len(set(modalities)) != len(modalities):
        raise ValueError(f"fusion expects modalities {tuple(modalities)}, got encodings for {tuple(encodings)}")
    return tuple(modalities)


class LateFusion(nn.Module):
    """dict[str, Encoded] -> Encoded whose pooled vector combines the modalities' pooled vectors.

    combine:
      'concat'  [B, sum_m D_m] (or [B, M * width] when `width` is set);
      'sum'     sum over modalities, [B, width];
      'product' elementwise product, [B, width];
      'gate'    sum_m g_m * x_m with g = softmax over modalities of a learned linear function of all pooled
                vectors (one gate per modality and feature). The gate kernel starts at zero, so training starts
                from the plain mean.
    width: common width; a modality whose pooled width differs is projected by `proj_{m}`. None means the pooled
      widths must already agree (except for 'concat', which accepts any widths).

    There is no token-level interaction, so the output token sequence is the fused vector as one token:
    tokens [B, 1, D'], mask [B, 1] (all True), pooled [B, D'].
    """

    combine: str = "concat"
    width: int | None = None
    modalities: tuple[str, ...] | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, encodings: Mapping[str, Encoded], *, train: bool = False) -> Encoded:
        del train  # no dropout or normalization statistics here
        if self.combine not in COMBINES:
            raise ValueError(f"unknown late-fusion combine {self.combine!r}; expected one of {COMBINES}")
        names = modality_order(encodings, self.modalities)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        pooled = []
        for m in names:
            x = jnp.asarray(encodings[m].pooled, self.dtype)
            if self.width is not None and x.shape[-1] != self.width:
                x = dense(self.width, ("embed", "mlp"), name=f"proj_{m}", **kw)(x)
            pooled.append(x)
        widths = {x.shape[-1] for x in pooled}
        if self.combine != "concat" and len(widths) > 1:
            got = {m: x.shape[-1] for m, x in zip(names, pooled)}
            raise ValueError(f"late fusion {self.combine!r} needs equal pooled widths, got {got}; set `width`")

        if self.combine == "concat":
            fused = jnp.concatenate(pooled, axis=-1)
        elif self.combine == "sum":
            fused = sum(pooled[1:], pooled[0])
        elif self.combine == "product":
            fused = pooled[0]
            for x in pooled[1:]:
                fused = fused * x
        else:
            stacked = jnp.stack(pooled, axis=1)  # [B, M, D]
            b, n, d = stacked.shape
            logits = dense(n * d, ("embed", "mlp"), kernel_init=nn.initializers.zeros, name="gate", **kw)(
                stacked.reshape(b, n * d)
            )
            gates = jax.nn.softmax(logits.reshape(b, n, d).astype(jnp.float32), axis=1).astype(self.dtype)
            fused = jnp.sum(gates * stacked, axis=1)
        return Encoded(tokens=fused[:, None, :], mask=jnp.ones((fused.shape[0], 1), bool), pooled=fused)
