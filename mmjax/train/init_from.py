"""`config.init_from`: start a run from weights of another run or of a Hugging Face checkpoint.

config.init_from keys:
  kind    '' (off) | 'mmjax' (another run's workdir: its latest checkpoint) | 'hf' (a save_pretrained directory,
          read with mmjax.convert.load_pretrained)
  path    the workdir or directory
  source  '/'-separated subtree of the loaded parameters to take ('' = all), e.g. 'bert' for a BertModel; or a
          comma-separated list of them, e.g. 'video_tower,audio_tower' (both towers of an audio-visual run)
  target  '/'-separated subtree of this model's parameters to fill ('' = all), e.g. 'text_tower'; a list pairs
          with source's in order, e.g. 'towers_video,towers_audio'
  adapt   '' (take the weights as they are) or a change of architecture applied to them first, into the tower
          `model.image` describes: 'inflate_central' / 'inflate_average' (an image ViT's weights -> a `video_vit`:
          `encoders.inflate_vit`), 'ast_from_vit' (an image ViT's -> an `ast`: `encoders.ast_from_vit`)
Every parameter of the target subtree must be present with its exact shape: a mismatch lists them all.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
from etils import epath
from flax import traverse_util


def _subtree(tree: Any, path: str, what: str) -> Any:
    for part in [p for p in path.split("/") if p]:
        if not isinstance(tree, dict) or part not in tree:
            keys = sorted(tree) if isinstance(tree, dict) else []
            raise KeyError(f"init_from.{what} path {path!r}: no {part!r} here; available: {keys}")
        tree = tree[part]
    return tree


def pairs(cfg) -> list[tuple[str, str]]:
    """(source, target) subtree paths, in order: one pair, or the comma-separated lists paired."""
    sources, targets = cfg.source.split(","), cfg.target.split(",")
    if len(sources) != len(targets):
        raise ValueError(
            f"init_from.source names {len(sources)} subtrees and init_from.target {len(targets)}: "
            f"they pair in order ({cfg.source!r} -> {cfg.target!r})"
        )
    if len(sources) > 1 and cfg.adapt:
        raise ValueError(f"init_from.adapt {cfg.adapt!r} adapts one subtree; source lists {len(sources)}")
    return [(s.strip(), t.strip()) for s, t in zip(sources, targets)]


def check(cfg, params, tower=None) -> None:
    """Before any work: each target names a subtree of `params` (abstract shapes suffice), the source exists,
    and `tower` (model.image's) is what `cfg.adapt` makes."""
    if not cfg.kind:
        return
    if not epath.Path(cfg.path).exists():
        raise FileNotFoundError(f"init_from.path {cfg.path!r} does not exist")
    for _, target in pairs(cfg):
        _subtree(params, target, "target")
    _adapter(cfg, tower)


def load(cfg) -> list[tuple[Any, str]]:
    """(loaded subtree as host numpy arrays, target path) for each pair of `cfg`, the checkpoint read once."""
    params = _load_params(cfg)
    return [(jax.tree.map(np.asarray, _subtree(params, source, "source")), target) for source, target in pairs(cfg)]


def load_source(cfg) -> Any:
    """The parameter subtree `cfg` points at (its one source), as host numpy arrays."""
    ((loaded, _),) = load(cfg)
    return loaded


def _load_params(cfg) -> Any:
    if cfg.kind == "hf":
        from mmjax.convert import load_pretrained

        _, variables = load_pretrained(cfg.path)
        params = variables["params"]
    elif cfg.kind == "mmjax":
        from mmjax.train.checkpoint import Checkpointer

        params = Checkpointer(pathlib.Path(cfg.path) / "checkpoints", async_save=False).restore_params()
    else:
        raise ValueError(f"config key 'init_from.kind' must be '', 'hf' or 'mmjax', got {cfg.kind!r}")
    return params


ADAPTATIONS = ("", "inflate_central", "inflate_average", "ast_from_vit")


def _adapter(cfg, tower):
    """The function `cfg.adapt` names, after checking `tower` is what it makes; None for ''."""
    from mmjax.encoders import AST, VideoViT, ast_from_vit, inflate_vit

    if cfg.adapt == "":
        return None
    if cfg.adapt in ("inflate_central", "inflate_average"):
        if not isinstance(tower, VideoViT):
            raise ValueError(
                f"init_from.adapt {cfg.adapt!r} inflates into a video_vit tower, not {type(tower).__name__}"
            )
        return lambda vit: inflate_vit(vit, tower, method=cfg.adapt.removeprefix("inflate_"))
    if cfg.adapt == "ast_from_vit":
        if not isinstance(tower, AST):
            raise ValueError(f"init_from.adapt 'ast_from_vit' makes an ast tower, not {type(tower).__name__}")
        return lambda vit: ast_from_vit(vit, tower)
    raise ValueError(f"config key 'init_from.adapt' must be one of {ADAPTATIONS}, got {cfg.adapt!r}")


def adapt(cfg, loaded: Any, tower) -> Any:
    """`loaded` (an image ViT's parameters) made into parameters of `tower` as `cfg.adapt` says; as is for ''."""
    adapter = _adapter(cfg, tower)
    return loaded if adapter is None else jax.tree.map(np.asarray, adapter(loaded))


def merge(params: Any, loaded: Any, target: str) -> Any:
    """Replace params[target] with `loaded` after checking keys and shapes; returns the new params tree."""
    current = _subtree(params, target, "target")
    want = traverse_util.flatten_dict(current, sep="/")
    got = traverse_util.flatten_dict(loaded, sep="/")
    problems = [f"missing {k} {tuple(v.shape)}" for k, v in want.items() if k not in got]
    problems += [f"unexpected {k} {tuple(v.shape)}" for k, v in got.items() if k not in want]
    problems += [
        f"shape of {k}: expected {tuple(want[k].shape)}, got {tuple(v.shape)}"
        for k, v in got.items()
        if k in want and tuple(want[k].shape) != tuple(v.shape)
    ]
    if problems:
        raise ValueError(f"init_from does not fit target {target!r}:\n  " + "\n  ".join(problems))
    placed = {k: jax.device_put(v.astype(want[k].dtype), want[k].sharding) for k, v in got.items()}
    new_sub = traverse_util.unflatten_dict(placed, sep="/")
    if not target:
        return new_sub
    flat = traverse_util.flatten_dict(params, sep="/")
    flat = {k: v for k, v in flat.items() if not k.startswith(target.rstrip("/") + "/")}
    flat.update({f"{target.rstrip('/')}/{k}": v for k, v in traverse_util.flatten_dict(new_sub, sep="/").items()})
    return traverse_util.unflatten_dict(flat, sep="/")
