"""Checks that need the device count (or nothing at all) and no compilation: ranges, the mesh, batch splits,
widths against heads, required fields, evaluators the task can run. Each error names the key."""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections

from mmjax.config.errors import ConfigError
from mmjax.config.schema import REQUIRED, Named, declaration, named_keys, task_class


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Every check of a resolved config that needs no compilation and no data."""
    _expect(config.batch_size > 0, f"config key 'batch_size' must be positive, got {config.batch_size}")
    _expect(config.total_steps >= 0, f"config key 'total_steps' must be >= 0, got {config.total_steps}")
    for key in ("log_every", "checkpoint_every", "keep_checkpoints"):
        _expect(config[key] > 0, f"config key {key!r} must be positive, got {config[key]}")
    _expect(
        config.eval_every >= 0, f"config key 'eval_every' must be >= 0 (0: never evaluate), got {config.eval_every}"
    )
    _expect(config.optim.grad_accum_steps >= 1, "config key 'optim.grad_accum_steps' must be >= 1")
    sizes = mesh_sizes(config.mesh, num_devices)
    data_ways = sizes["data"] * sizes["fsdp"]
    micro = config.optim.grad_accum_steps
    _expect(
        config.batch_size % (data_ways * micro) == 0,
        f"config key 'batch_size' ({config.batch_size}) must divide over the data axes data x fsdp = "
        f"{sizes['data']} x {sizes['fsdp']}" + (f" times optim.grad_accum_steps={micro}" if micro > 1 else ""),
    )
    from mmjax.train.evaluate import supported

    can = supported(task_class(config.task))
    for name, entry in config.evals.items():
        _expect(
            entry.type in can,
            f"config key 'evals.{name}.type' is {entry.type!r}; task {config.task!r} supports {can}",
        )
        _expect(
            entry.batch_size > 0 and entry.batch_size % data_ways == 0,
            f"config key 'evals.{name}.batch_size' ({entry.batch_size}) must be positive and divide over the data "
            f"axes data x fsdp = {sizes['data']} x {sizes['fsdp']}",
        )
        _expect(entry.every >= 0, f"config key 'evals.{name}.every' must be >= 0, got {entry.every}")
    _expect(
        not config.profile_steps or len(config.profile_steps) == 2,
        f"config key 'profile_steps' must be () or (first, last), got {config.profile_steps!r}",
    )
    _expect(
        not config.init_from.kind or config.init_from.path,
        f"config key 'init_from.path' is empty but init_from.kind is {config.init_from.kind!r}",
    )
    _validate_model(config)


def mesh_sizes(mesh_config: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """config.mesh + device count -> {'data': d, 'fsdp': f, 'tensor': t}; -1 takes the remaining devices."""
    from mmjax import sharding

    try:
        return sharding.resolve_mesh_shape(dict(mesh_config.items()), num_devices)
    except ValueError as e:
        raise ConfigError(f"config key 'mesh': {e}") from None


def _validate_model(config) -> None:
    decl = declaration({"task": config.task})["model"]
    for key, d in decl.items():
        if isinstance(d, Named) and config.model[key] is not None:
            group = config.model[key]
            for field, spec in named_keys(d, group.name, f"model.{key}", group.to_dict()).items():
                _expect(
                    group[field] is not None or not spec[1].startswith(REQUIRED),
                    f"config key 'model.{key}.{field}' is required by {d.table} {group.name!r}",
                )
    _validate_widths(config.model, "model")
    _validate_frame_tokens(config.model.get("image"))
    task_class(config.task).validate_config(config)


def _validate_frame_tokens(image) -> None:
    """A frame_vit's patch tokens carry no time position, so no temporal model may read them (encoders.FrameViT)."""
    if image is None or image.get("name") != "frame_vit":
        return
    _expect(
        image.tokens in ("frames", "patches"),
        f"config key 'model.image.tokens' must be 'frames' or 'patches', got {image.tokens!r}",
    )
    _expect(
        image.tokens == "frames" or not image.temporal_depth,
        f"config key 'model.image.tokens' is 'patches' but 'model.image.temporal_depth' is {image.temporal_depth}: "
        "patch tokens take no temporal model (set it to 0)",
    )


def _validate_widths(node: ml_collections.ConfigDict, path: str) -> None:
    """Every group holding `width` and `num_heads` must have width divisible by heads."""
    if "width" in node and "num_heads" in node and node.width and node.num_heads:
        _expect(
            node.width % node.num_heads == 0,
            f"config key '{path}.width' ({node.width}) must be divisible by '{path}.num_heads' ({node.num_heads})",
        )
    for key, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            _validate_widths(value, f"{path}.{key}")
