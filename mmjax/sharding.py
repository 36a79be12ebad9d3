"""Device mesh, logical-axis rules, and helpers to create and run sharded models.

Model code names array axes logically (`batch`, `length`, `embed`, `mlp`, `heads`, `kv`, `vocab`, `norm`,
`layers`, `conv_*`); this module alone maps them onto the mesh axes `data`, `fsdp` and `tensor`.

Each preset has TWO tables (as levanter does): `params` says how a parameter is stored, `activations` how an
intermediate value is laid out while computing. They differ on purpose: under FSDP a kernel is stored split
over `fsdp` along `embed`, while activations keep `embed` whole and split the batch instead; the compiler
all-gathers each kernel where it is used and frees it after.

  preset   params                                          activations
  dp       everything replicated                           batch -> (data, fsdp)
  fsdp     embed, conv_out -> fsdp (then mlp, vocab)       batch -> (data, fsdp)
  fsdp_tp  mlp, heads, vocab -> tensor; embed, conv_out    batch -> (data, fsdp); mlp, heads, vocab -> tensor
           -> fsdp

Rules are Flax-style `(logical_name, mesh_axes)` pairs in priority order: a dimension takes the first rule
naming it whose mesh axes are still free in that array and divide the dimension; otherwise it is replicated.
A name no rule mentions (`length`, `kv`, `norm`, `layers`, ...) is replicated.

Typical use:
    mesh = make_mesh({"data": -1, "fsdp": 8})
    rules = get_rules("fsdp")
    params, shardings = init_sharded(lambda key, x: model.init(key, x)["params"], mesh, rules, key, x)
    step = jax.jit(step_fn, in_shardings=(shardings, batch_sharding(mesh)), out_shardings=...)
    with activation_context(mesh, rules):
        out = step(params, jax.device_put(batch, batch_sharding(mesh)))
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")
MeshAxes = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxes], ...]
BATCH_AXES = ("data", "fsdp")


# --------------------------------------------------------------------------------------------------- mesh


def resolve_mesh_shape(config: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """{'data': -1, 'fsdp': 2} + 8 devices -> {'data': 4, 'fsdp': 2, 'tensor': 1}.

    Missing axes are 1; at most one axis may be -1 and takes the remaining devices. Raises ValueError naming
    the sizes when the product cannot equal `num_devices`.
    """
    config = dict(config.items())
    unknown = sorted(set(config) - set(MESH_AXES))
    if unknown:
        raise ValueError(f"unknown mesh axes {unknown}; expected a subset of {list(MESH_AXES)}")
    sizes = {axis: config.get(axis, 1) for axis in MESH_AXES}
    for axis, size in sizes.items():
        if not isinstance(size, int) or isinstance(size, bool) or (size < 1 and size != -1):
            raise ValueError(f"mesh axis {axis!r} must be a positive int or -1, got {size!r}")
    free = [axis for axis, size in sizes.items() if size == -1]
    if len(free) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {free} in {sizes}")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(
                f"mesh {sizes}: the fixed axes need a multiple of {fixed} devices, but there are {num_devices}"
            )
        sizes[free[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(
            f"mesh {sizes} has {fixed} devices (product of the sizes) but there are {num_devices}; "
            f"set one axis to -1 to take the remaining devices"
        )
    return sizes


def make_mesh(config: Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('data', 'fsdp', 'tensor') mesh from a dict or ConfigDict of axis sizes (default: all on data).

    Axes are `AxisType.Auto` (jax.make_mesh defaults to Explicit) so that Linen's logical partitioning and
    `with_sharding_constraint` drive the layout, with the compiler propagating the rest.
    """
    devices = list(devices) if devices is not None else jax.devices()
    sizes = resolve_mesh_shape(config if config is not None else {"data": -1}, len(devices))
    return jax.make_mesh(
        tuple(sizes[a] for a in MESH_AXES),
        MESH_AXES,
        axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
        devices=devices,
    )


# -------------------------------------------------------------------------------------------------- rules


@dataclasses.dataclass(frozen=True)
class ShardingRules:
    """Logical-axis rules for parameters (storage) and activations (compute); see the module docstring."""

    params: Rules
    activations: Rules

    def for_mesh(self, mesh: Mesh) -> ShardingRules:
        """The same rules without mesh axes that `mesh` lacks, so they also fit a mesh of just ('data',)."""
        return ShardingRules(_restrict(self.params, mesh), _restrict(self.activations, mesh))


def _restrict(rules: Rules, mesh: Mesh) -> Rules:
    out = []
    for name, axes in rules:
        kept = tuple(a for a in _as_tuple(axes) if a in mesh.axis_names)
        out.append((name, kept[0] if len(kept) == 1 else (kept or None)))
    return tuple(out)


def _as_tuple(axes: MeshAxes) -> tuple[str, ...]:
    if axes is None:
        return ()
    return (axes,) if isinstance(axes, str) else tuple(axes)


_BATCH_RULE = (("batch", BATCH_AXES),)

PRESETS: dict[str, ShardingRules] = {
    "dp": ShardingRules(params=(), activations=_BATCH_RULE),
    # mlp and vocab are fallbacks: they take fsdp only where an array's embed axis is absent or indivisible.
    "fsdp": ShardingRules(
        params=(("embed", "fsdp"), ("conv_out", "fsdp"), ("mlp", "fsdp"), ("vocab", "fsdp")),
        activations=_BATCH_RULE,
    ),
    "fsdp_tp": ShardingRules(
        params=(
            ("mlp", "tensor"),
            ("heads", "tensor"),
            ("vocab", "tensor"),
            ("embed", "fsdp"),
            ("conv_out", "fsdp"),
        ),
        activations=_BATCH_RULE + (("mlp", "tensor"), ("heads", "tensor"), ("vocab", "tensor")),
    ),
}


def get_rules(preset: str | ShardingRules) -> ShardingRules:
    """A preset by name ('dp', 'fsdp', 'fsdp_tp'); a ShardingRules passes through unchanged."""
    if isinstance(preset, ShardingRules):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown sharding preset {preset!r}; available: {sorted(PRESETS)}")
    return PRESETS[preset]


def _param_rules(rules: str | ShardingRules | Rules) -> Rules:
    if isinstance(rules, (str, ShardingRules)):
        return get_rules(rules).params
    return tuple(rules)


@dataclasses.dataclass(frozen=True)
class _Fallback:
    name: str
    size: int
    axes: tuple[str, ...]
    axes_size: int


def logical_to_spec(
    names: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules
) -> tuple[PartitionSpec, list[_Fallback]]:
    """Logical names of an array of `shape` -> (PartitionSpec on `mesh`, dims that fell back to replicated).

    Flax's priority semantics, plus two safeties: mesh axes `mesh` lacks are ignored, and a dimension that the
    rule's mesh axes do not divide stays replicated (a later rule may still use those axes elsewhere) instead
    of failing to compile.
    """
    if len(names) != len(shape):
        raise ValueError(f"logical names {tuple(names)} do not match an array of shape {tuple(shape)}")
    spec: list[MeshAxes] = [None] * len(shape)
    used: set[str] = set()
    fallbacks = []
    for rule_name, rule_axes in rules:
        if rule_name not in names:
            continue
        dim = list(names).index(rule_name)
        axes = tuple(a for a in _as_tuple(rule_axes) if a in mesh.axis_names and mesh.shape[a] > 1)
        if spec[dim] is not None or not axes or used.intersection(axes):
            continue
        size = math.prod(mesh.shape[a] for a in axes)
        if shape[dim] % size:
            fallbacks.append(_Fallback(rule_name, shape[dim], axes, size))
            continue
        spec[dim] = axes[0] if len(axes) == 1 else axes
        used.update(axes)
    return PartitionSpec(*spec), fallbacks


def _is_box(x) -> bool:
    return isinstance(x, nn.Partitioned)


def logical_to_shardings(tree: Any, mesh: Mesh, rules: str | ShardingRules | Rules) -> Any:
    """A pytree whose leaves carry `nn.LogicallyPartitioned` metadata -> the matching NamedSharding tree.

    `tree` is typically `jax.eval_shape(model.init, ...)` (abstract, nothing allocated). The result has the
    structure of the UNBOXED tree (`nn.meta.unbox(tree)`): each box becomes one NamedSharding, and leaves
    without metadata are replicated. `rules` is a preset name, a ShardingRules (its `params` table is used),
    or a raw rules table. Dimensions not divisible by their mesh axes are replicated, with one warning per
    call listing them.
    """
    table = _param_rules(rules)
    fallbacks: list[tuple[str, _Fallback]] = []

    def one(path, leaf):
        shape = leaf.value.shape if _is_box(leaf) else getattr(leaf, "shape", ())
        if isinstance(leaf, nn.LogicallyPartitioned):
            spec, fell = logical_to_spec(leaf.names, shape, mesh, leaf.rules or table)
            fallbacks.extend((jax.tree_util.keystr(path), f) for f in fell)
        elif _is_box(leaf):  # nn.Partitioned: names are already mesh axes
            spec = PartitionSpec(*leaf.names)
        else:
            spec = PartitionSpec()
        return NamedSharding(mesh, spec)

    shardings = jax.tree_util.tree_map_with_path(one, tree, is_leaf=_is_box)
    if fallbacks:
        listed = "; ".join(
            f"{path} {f.name}={f.size} over {'x'.join(f.axes)}={f.axes_size}" for path, f in fallbacks[:8]
        )
        more = f" (and {len(fallbacks) - 8} more)" if len(fallbacks) > 8 else ""
        logger.warning(
            "%d parameter dimension(s) are not divisible by their mesh axes and stay replicated: %s%s",
            len(fallbacks),
            listed,
            more,
        )
    return shardings


def unbox(tree: Any) -> Any:
    """Boxed (LogicallyPartitioned) leaves -> their values, e.g. for `jax.eval_shape(model.init, ...)` outputs."""
    # Strip the metadata without the sharding constraint that `unbox()` applies when a mesh is active:
    # placement is decided by out_shardings, with the divisibility fallback the constraint would not have.
    return jax.tree.map(lambda x: x.value if _is_box(x) else x, tree, is_leaf=_is_box)


def abstract_sharded(
    init_fn: Callable[..., Any], mesh: Mesh, rules: str | ShardingRules | Rules, *args: Any
) -> tuple[Any, Any]:
    """What `init_sharded(init_fn, ...)` would create, without creating it: (a tree of jax.ShapeDtypeStruct
    carrying their shardings, e.g. to restore a checkpoint into; the NamedSharding tree)."""
    with nn.logical_axis_rules(()):
        boxed = jax.eval_shape(init_fn, *args)
    shardings = logical_to_shardings(boxed, mesh, rules)
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), unbox(boxed), shardings)
    return abstract, shardings


def init_sharded(
    init_fn: Callable[..., Any], mesh: Mesh, rules: str | ShardingRules | Rules, *args: Any
) -> tuple[Any, Any]:
    """Run `init_fn(*args)` with every output array created directly in its sharded layout.

    init_fn: any function returning a pytree with LogicallyPartitioned leaves (e.g. `model.init`, or a lambda
             selecting `["params"]`, or a whole train-state constructor). `args` are arrays (rng keys, dummy
             inputs); bind anything static with functools.partial.
    Returns (unboxed pytree of jax.Arrays, matching NamedSharding tree). Shapes and metadata come from
    jax.eval_shape, so no full copy of the parameters ever exists on one device.
    """
    _, shardings = abstract_sharded(init_fn, mesh, rules, *args)
    return create_sharded(init_fn, shardings, *args), shardings


def create_sharded(init_fn: Callable[..., Any], shardings: Any, *args: Any, compiler_options=None) -> Any:
    """`init_fn(*args)` unboxed, each array created directly in its place in `shardings` (from abstract_sharded).
    `compiler_options`: XLA options for the init's compilation (as `jax.jit` takes them)."""
    # No logical rules while tracing, even inside an activation_context: the layout comes from out_shardings
    # alone, and Linen's unbox-time constraints (which would apply activation rules to parameters) stay off.
    with nn.logical_axis_rules(()):
        init = jax.jit(lambda *a: unbox(init_fn(*a)), out_shardings=shardings, compiler_options=compiler_options)
        return init(*args)


def batch_sharding(mesh: Mesh, batch_axes: Sequence[str] | None = None) -> NamedSharding:
    """Input batches: the leading (batch) dimension split over `batch_axes` (default: the mesh's data and fsdp
    axes), everything else replicated."""
    axes = tuple(a for a in (BATCH_AXES if batch_axes is None else batch_axes) if a in mesh.axis_names)
    return NamedSharding(mesh, PartitionSpec(axes or None))


@contextlib.contextmanager
def activation_context(mesh: Mesh, rules: str | ShardingRules) -> Iterator[None]:
    """Make `mesh` current and activate the activation rules, so Linen's `nn.with_logical_constraint` calls
    inside models (and losses) pin intermediate layouts. Trace and call jitted functions inside it.
    """
    rules = get_rules(rules).for_mesh(mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules.activations):
        yield
