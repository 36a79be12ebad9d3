"""Rule machinery between Hugging Face state dicts and mmjax parameter trees.

A converter is a list of `Rule(hf_key, mm_path, transform)`, written for the *unscanned* layout
(`encoder/layer_0/...`). Scanned encoders (`encoder/layers/...` with a leading [num_layers] axis) are handled
generically here by unstacking the expected tree before matching and stacking the result after, so no
converter has to know about scan.

Strictness comes from the model, not from the checkpoint: the expected parameter shapes are taken from
`jax.eval_shape(model.init, ...)`, pushed through each rule's export transform to get the exact Hugging Face
keys and shapes the model needs, and compared with the checkpoint before any tensor is read. Every missing,
unexpected and mis-shaped key is reported in one error, in Hugging Face names, with shapes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Transform:
    """How one tensor changes layout between PyTorch and mmjax.

    to_mm: PyTorch layout -> mmjax layout up to a final reshape (import reshapes to the expected mmjax shape,
           which is how flat head dimensions [H*Dh] become [H, Dh] without the transform knowing H).
    to_hf: mmjax layout -> PyTorch layout. Written with array methods only, so it runs on numpy arrays when
           saving and on abstract values under `jax.eval_shape` when computing expected shapes.
    """

    name: str
    to_mm: Callable[[Any], Any]
    to_hf: Callable[[Any], Any]


IDENTITY = Transform("identity", lambda x: x, lambda x: x)
# torch.nn.Linear weight [out, in] <-> Dense kernel [in, out].
LINEAR = Transform("linear", lambda w: w.T, lambda k: k.T)
# q/k/v projection weight [H*Dh, D] <-> DenseGeneral kernel [D, H, Dh].
HEADS_IN = Transform("heads_in", lambda w: w.T, lambda k: k.reshape(k.shape[0], -1).T)
# q/k/v bias [H*Dh] <-> [H, Dh].
HEADS_BIAS = Transform("heads_bias", lambda b: b, lambda b: b.reshape(-1))
# attention output weight [D, H*Dh] <-> kernel [H, Dh, D].
HEADS_OUT = Transform("heads_out", lambda w: w.T, lambda k: k.reshape(-1, k.shape[-1]).T)
# torch Conv2d weight [O, I, kh, kw] <-> flax Conv kernel [kh, kw, I, O].
CONV = Transform("conv", lambda w: w.transpose(2, 3, 1, 0), lambda k: k.transpose(3, 2, 0, 1))
# torch Conv3d weight [O, I, kt, kh, kw] <-> flax Conv kernel [kt, kh, kw, I, O] (video tubelets).
CONV3D = Transform("conv3d", lambda w: w.transpose(2, 3, 4, 1, 0), lambda k: k.transpose(4, 3, 0, 1, 2))
# torch Conv2d weight [O, I, kh, kw] <-> a one-frame tubelet kernel [1, kh, kw, I, O] (per-frame patches).
CONV_FRAME = Transform("conv_frame", CONV.to_mm, lambda k: CONV.to_hf(k.reshape(k.shape[1:])))
# A [D] / [N, D] parameter stored with leading singleton axes ([1, 1, D] / [1, N, D]).
LEADING_ONE = Transform("leading_one", lambda x: x, lambda x: x.reshape((1,) * (3 - x.ndim) + x.shape))
# A scalar stored as a one-element vector (SigLIP's logit_scale / logit_bias are [1]) <-> a 0-d parameter.
ONE_ELEMENT = Transform("one_element", lambda x: x, lambda x: x.reshape(1))


@dataclasses.dataclass(frozen=True)
class Rule:
    """One Hugging Face tensor <-> one mmjax parameter ('/'-separated path under `params`).

    part: (i, n) when the tensor holds n parameters concatenated along axis 0 and this is the i-th, as torch's
          nn.MultiheadAttention stores q, k and v in one `in_proj_weight` [3D, D]. Loading slices it; saving
          concatenates the n parts, so the round trip is exact.
    """

    hf: str
    mm: str
    transform: Transform = IDENTITY
    part: tuple[int, int] | None = None


def linear_rules(hf: str, mm: str, *, bias: bool = True) -> list[Rule]:
    """torch Linear `{hf}.weight/.bias` <-> Dense `{mm}/kernel`/`bias`."""
    rules = [Rule(f"{hf}.weight", f"{mm}/kernel", LINEAR)]
    return rules + ([Rule(f"{hf}.bias", f"{mm}/bias")] if bias else [])


def layer_norm_rules(hf: str, mm: str) -> list[Rule]:
    """torch LayerNorm `{hf}.weight/.bias` <-> flax LayerNorm `{mm}/scale`/`bias`."""
    return [Rule(f"{hf}.weight", f"{mm}/scale"), Rule(f"{hf}.bias", f"{mm}/bias")]


def attention_rules(hf_query: str, hf_key: str, hf_value: str, hf_out: str, mm: str) -> list[Rule]:
    """Separate q/k/v/out torch Linears <-> layers.MultiHeadAttention at `mm` (query/key/value/out)."""
    rules = []
    for hf, name in ((hf_query, "query"), (hf_key, "key"), (hf_value, "value")):
        rules += [
            Rule(f"{hf}.weight", f"{mm}/{name}/kernel", HEADS_IN),
            Rule(f"{hf}.bias", f"{mm}/{name}/bias", HEADS_BIAS),
        ]
    return rules + [
        Rule(f"{hf_out}.weight", f"{mm}/out/kernel", HEADS_OUT),
        Rule(f"{hf_out}.bias", f"{mm}/out/bias"),
    ]


def fused_attention_rules(hf: str, mm: str) -> list[Rule]:
    """torch.nn.MultiheadAttention `{hf}.in_proj_weight` [3D, D] / `in_proj_bias` [3D] (q; k; v) and
    `{hf}.out_proj` <-> layers.MultiHeadAttention at `mm`."""
    rules = []
    for i, name in enumerate(("query", "key", "value")):
        rules += [
            Rule(f"{hf}.in_proj_weight", f"{mm}/{name}/kernel", HEADS_IN, part=(i, 3)),
            Rule(f"{hf}.in_proj_bias", f"{mm}/{name}/bias", HEADS_BIAS, part=(i, 3)),
        ]
    return rules + [
        Rule(f"{hf}.out_proj.weight", f"{mm}/out/kernel", HEADS_OUT),
        Rule(f"{hf}.out_proj.bias", f"{mm}/out/bias"),
    ]


# --- trees --------------------------------------------------------------------------------------------------


def flatten(tree: Mapping) -> dict[str, Any]:
    """Nested dict -> {'a/b/c': leaf}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}/{k}": v for k, v in flatten(value).items()})
        else:
            flat[key] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict:
    """{'a/b/c': leaf} -> nested dict."""
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


_LAYER = re.compile(r"layer_(\d+)")


def unstack_layers(tree: Mapping) -> dict:
    """Scanned layout -> unscanned: every `layers` subtree with a leading [L] axis becomes
    `layer_0..layer_{L-1}`.

    Works on arrays and on jax.ShapeDtypeStruct leaves (for expected shapes). `layers` is the name
    layers.Encoder gives its nn.scan stack; no other mmjax module uses it.
    """
    out = {}
    for key, value in tree.items():
        if key == "layers" and isinstance(value, Mapping):
            leaves = jax.tree.leaves(value)
            num_layers = leaves[0].shape[0]
            for i in range(num_layers):
                out[f"layer_{i}"] = jax.tree.map(lambda x, i=i: _index(x, i), dict(value))
        elif isinstance(value, Mapping):
            out[key] = unstack_layers(value)
        else:
            out[key] = value
    return out


def _index(x, i):
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
    return x[i]


def stack_layers(tree: Mapping, template: Mapping) -> dict:
    """Inverse of unstack_layers: stack `layer_i` wherever `template` (the model's layout) has `layers`."""
    out = {}
    for key, value in template.items():
        if key == "layers" and isinstance(value, Mapping):
            names = sorted((k for k in tree if _LAYER.fullmatch(k)), key=lambda k: int(k.split("_")[1]))
            out["layers"] = jax.tree.map(lambda *xs: np.stack(xs), *[tree[n] for n in names])
        elif isinstance(value, Mapping):
            out[key] = stack_layers(tree[key], value)
        else:
            out[key] = tree[key]
    return out


def expected_params(model: nn.Module, inputs: Mapping[str, Any]) -> dict:
    """The model's parameter tree as jax.ShapeDtypeStruct leaves (no memory, no compute), boxes removed."""
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), **inputs))
    return nn.meta.unbox(variables["params"])


def hf_shapes(rules: Iterable[Rule], expected_flat: Mapping[str, jax.ShapeDtypeStruct]) -> dict[str, Shape]:
    """The Hugging Face key -> shape a model needs, by running each export transform on abstract values.

    A tensor made of parts (Rule.part) has n times its parts' first dimension; parts that do not tile it
    exactly (a missing index, unequal shapes) are a converter bug and a ValueError.
    """
    shapes, parts = {}, {}
    for r in rules:
        shape = tuple(jax.eval_shape(r.transform.to_hf, expected_flat[r.mm]).shape)
        if r.part is None:
            shapes[r.hf] = shape
        else:
            parts.setdefault(r.hf, {})[r.part] = shape
    for key, pieces in parts.items():
        n = next(iter(pieces))[1]
        part_shapes = set(pieces.values())
        if set(pieces) != {(i, n) for i in range(n)} or len(part_shapes) != 1:
            raise ValueError(f"converter rules for {key!r} do not split it into equal parts: {pieces}")
        ((first, *rest),) = part_shapes
        shapes[key] = (n * first, *rest)
    return shapes


# --- checks -------------------------------------------------------------------------------------------------


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not match the model: lists every missing, unexpected and mis-shaped key."""

    def __init__(self, missing: dict, unexpected: dict, mismatched: dict, context: str = ""):
        self.missing, self.unexpected, self.mismatched, self.context = (
            missing,
            unexpected,
            mismatched,
            context,
        )
        lines = [f"checkpoint does not match the model{f' ({context})' if context else ''}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}), expected shape:")
            lines += [f"    {k}: {list(s)}" for k, s in sorted(missing.items())]
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}), shape in checkpoint:")
            lines += [f"    {k}: {list(s)}" for k, s in sorted(unexpected.items())]
        if mismatched:
            lines.append(f"  mis-shaped keys ({len(mismatched)}), expected vs checkpoint:")
            lines += [f"    {k}: expected {list(e)}, got {list(g)}" for k, (e, g) in sorted(mismatched.items())]
        super().__init__("\n".join(lines))


def compare_shapes(expected: Mapping[str, Shape], got: Mapping[str, Shape], context: str = "") -> None:
    """Raise one CheckpointMismatchError if the key sets or any shape differ."""
    missing = {k: s for k, s in expected.items() if k not in got}
    unexpected = {k: s for k, s in got.items() if k not in expected}
    mismatched = {k: (expected[k], tuple(got[k])) for k in expected if k in got and tuple(expected[k]) != tuple(got[k])}
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(missing, unexpected, mismatched, context)


def check_rules(rules: list[Rule], expected_flat: Mapping[str, Any], what: str) -> None:
    """Every model parameter has exactly one rule and every rule names a model parameter.

    A parameter without a rule means the model has a part the Hugging Face class cannot hold (e.g. a MAP
    head); a rule without a parameter is a converter bug. Both are ValueErrors naming the paths.
    """
    paths = [r.mm for r in rules]
    dupes = sorted({p for p in paths if paths.count(p) > 1})
    uncovered = sorted(set(expected_flat) - set(paths))
    dangling = sorted(set(paths) - set(expected_flat))
    problems = []
    if uncovered:
        problems.append(f"mmjax parameters with no {what} counterpart: {uncovered}")
    if dangling:
        problems.append(f"converter rules for parameters the model does not have: {dangling}")
    if dupes:
        problems.append(f"parameters mapped twice: {dupes}")
    if problems:
        raise ValueError("; ".join(problems))


# --- import / export ----------------------------------------------------------------------------------------


def import_params(
    rules: list[Rule],
    tensors: Mapping[str, np.ndarray],
    expected: Mapping,
    param_dtype,
) -> dict:
    """Hugging Face tensors -> mmjax params in the model's own (possibly scanned) layout.

    `expected` is the model's abstract parameter tree; `tensors` must already have passed `compare_shapes`
    against `hf_shapes(rules, ...)`, which is what makes the final reshape safe.
    """
    expected_flat = flatten(unstack_layers(expected))
    flat = {}
    for r in rules:
        value = np.asarray(tensors[r.hf])
        if r.part is not None:
            value = np.split(value, r.part[1], axis=0)[r.part[0]]
        value = r.transform.to_mm(value)
        flat[r.mm] = np.asarray(value.reshape(expected_flat[r.mm].shape), dtype=param_dtype)
    params = stack_layers(unflatten(flat), expected)
    # Guards converter bugs: the result must be exactly the tree model.init would have made.
    got = {k: tuple(v.shape) for k, v in flatten(params).items()}
    compare_shapes({k: tuple(v.shape) for k, v in flatten(expected).items()}, got, "mmjax parameter tree")
    return params


def export_params(rules: list[Rule], params: Mapping) -> dict[str, np.ndarray]:
    """mmjax params (scanned or not) -> Hugging Face state dict of numpy arrays."""
    flat = flatten(unstack_layers(jax.device_get(dict(params))))
    out, parts = {}, {}
    for r in rules:
        value = np.asarray(r.transform.to_hf(np.asarray(flat[r.mm])))
        if r.part is None:
            out[r.hf] = value
        else:
            parts.setdefault(r.hf, {})[r.part[0]] = value
    for key, pieces in parts.items():
        out[key] = np.concatenate([pieces[i] for i in sorted(pieces)], axis=0)
    return out
