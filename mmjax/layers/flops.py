"""Model FLOPs from a module's definition: the matrix work of a forward pass, counted from its jaxpr.

    forward_flops(ViT.from_variant("B/16"), jnp.zeros((1, 224, 224, 3)))   # 35.2e9 per image
    training_flops(model, *inputs)                                           # 3x the forward (PaLM's convention)

Only contractions count (dot_general, convolutions, fused attention), and FFTs (an audio frontend's spectra: 5 N
log2 N per length-N transform, the radix-2 count); elementwise work, softmax and the optimizer do not, which is the
convention MFU figures are published in. The count traces the function abstractly (no arrays, no compile), so it is
the same on every backend: XLA's own cost analysis is not (on a GPU it sees none of the work inside cuBLAS and cuDNN
calls). A function's count is what it computes as traced: the forward of a rematerialized module counts once, but
the gradient of one recomputes it (counted: hardware FLOPs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp


def _dot_general(eqn) -> float:
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape
    return 2.0 * math.prod(out) * math.prod(lhs[d] for d in lhs_contract)


def _conv(eqn) -> float:
    kernel = eqn.invars[1].aval.shape
    dims = eqn.params["dimension_numbers"]
    out_features_dim = dims.rhs_spec[0]
    # each output element: a dot over the kernel's spatial window and its input features (already per group)
    per_output = math.prod(kernel) / kernel[out_features_dim]
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output


def _fused_attention(eqn) -> float:
    # q [B, T, H, D], k [B, S, H, D]: QK^T and the weighted sum of V, 2 flops per multiply-add each; the backward
    # kernel does twice that (the gradients of Q, K and V, and the recomputed probabilities)
    q, k = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    b, t, h, d = q
    forward = 4.0 * b * h * t * k[1] * d
    return 2 * forward if "bwd" in eqn.primitive.name else forward


def _fft(eqn) -> float:
    # fft_lengths: the transform's last axes; the input's leading axes are the batch of transforms
    lengths = eqn.params["fft_lengths"]
    n = math.prod(lengths)
    transforms = math.prod(eqn.invars[0].aval.shape[: -len(lengths)])
    return 5.0 * transforms * n * math.log2(n)


def _sub_jaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def jaxpr_flops(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_general(eqn)
        elif name == "conv_general_dilated":
            total += _conv(eqn)
        elif name == "fft":
            total += _fft(eqn)
        elif "dot_product_attention" in name or "fused_attention" in name:
            total += _fused_attention(eqn)
        elif name == "scan":
            total += eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"].jaxpr)
        elif name == "shard_map":  # the body is traced at one shard's shapes: every device runs it
            mesh, axes = eqn.params["mesh"], eqn.params.get("manual_axes") or eqn.params.get("axis_names") or ()
            copies = math.prod(mesh.shape[a] for a in axes) if axes else mesh.size
            body = eqn.params["jaxpr"]
            total += copies * jaxpr_flops(getattr(body, "jaxpr", body))
        elif name == "cond":
            total += max(jaxpr_flops(branch.jaxpr) for branch in eqn.params["branches"])
        else:  # pjit, remat, custom_jvp/vjp, shard_map: their inner computation once
            total += sum(jaxpr_flops(sub) for sub in _sub_jaxprs(eqn))
    return total


def function_flops(fn: Callable, *args, **kwargs) -> float:
    """Contraction FLOPs of one call of `fn` on arrays (or ShapeDtypeStructs) of these shapes."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), x.dtype), (args, kwargs))
    return jaxpr_flops(jax.make_jaxpr(lambda a, k: fn(*a, **k))(*abstract).jaxpr)


def forward_flops(module, *inputs, variables: Any = None, **kwargs) -> float:
    """FLOPs of `module.apply(variables, *inputs, **kwargs)`; the variables' shapes come from `init` (abstractly)
    when not given."""
    if variables is None:
        variables = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs, **kwargs))
    return function_flops(lambda v, *a: module.apply(v, *a, **kwargs), variables, *inputs)


def training_flops(module, *inputs, variables: Any = None, **kwargs) -> float:
    """Model FLOPs of one training step on these inputs: the forward and a backward pass of twice its work."""
    return 3.0 * forward_flops(module, *inputs, variables=variables, **kwargs)
