"""Optimizers from `config.optim` (Optax): AdamW, LAMB, SGD; warmup + cosine/linear schedules; weight decay on
kernels only; global-norm clipping; per-parameter `(regex, setting)` rules.

config.optim keys:
  name              'adamw' | 'lamb' | 'sgd'
  lr                peak learning rate
  schedule          'cosine' | 'linear' | 'constant' (after warmup)
  warmup_steps      linear warmup from 0
  end_lr_factor     final lr = lr * end_lr_factor (cosine / linear)
  b1, b2, eps       Adam / LAMB moments; momentum, nesterov: SGD
  weight_decay      decoupled decay, applied to parameters with ndim >= 2 only (never norms or biases)
  clip_norm         global gradient-norm clipping (0 = off); frozen parameters do not count toward the norm
  grad_accum_steps  micro-batches per step (the step function splits the batch; see train/step.py)
  rules             [(regex, {setting: value})] matched against '/'-joined parameter paths, first match wins:
                    {'freeze': True} (no update, no optimizer state: LiT), {'lr_mult': 0.1},
                    {'weight_decay_mult': 0.0}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import optax
from flax import traverse_util

RULE_SETTINGS = ("freeze", "lr_mult", "weight_decay_mult")


def make_schedule(cfg, total_steps: int) -> Callable[[jax.Array], jax.Array]:
    warmup = int(cfg.get("warmup_steps", 0))
    lr = float(cfg.lr)
    end = lr * float(cfg.get("end_lr_factor", 0.0))
    decay_steps = max(total_steps - warmup, 1)
    kind = cfg.get("schedule", "cosine")
    if kind == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps, alpha=end / lr if lr else 0.0)
    elif kind == "linear":
        main = optax.linear_schedule(lr, end, decay_steps)
    elif kind == "constant":
        main = optax.constant_schedule(lr)
    else:
        raise ValueError(f"config key 'optim.schedule' must be cosine, linear or constant, got {kind!r}")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def match_rules(params, rules: Sequence[tuple[str, dict]]) -> Any:
    """-> a pytree like params whose leaves are the settings dict of the first matching rule ({} if none)."""
    compiled = []
    for pattern, setting in rules:
        unknown = set(setting) - set(RULE_SETTINGS)
        if unknown:
            raise ValueError(f"optim.rules setting {sorted(unknown)} for {pattern!r}; known: {list(RULE_SETTINGS)}")
        compiled.append((re.compile(pattern), dict(setting)))
    flat = traverse_util.flatten_dict(params)
    matched = {}
    used = set()
    for key in flat:
        path = "/".join(str(p) for p in key)
        for i, (regex, setting) in enumerate(compiled):
            if regex.fullmatch(path) or regex.match(path):
                matched[key] = setting
                used.add(i)
                break
        else:
            matched[key] = {}
    unused = [rules[i][0] for i in range(len(rules)) if i not in used]
    if unused:
        raise ValueError(f"optim.rules patterns match no parameter: {unused} (paths look like 'image_tower/...')")
    return traverse_util.unflatten_dict(matched)


def _is_setting(x) -> bool:
    return isinstance(x, dict) and all(k in RULE_SETTINGS for k in x)


def _scale_leaves(multipliers) -> optax.GradientTransformation:
    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, m: u * m, updates, multipliers), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def build_optimizer(cfg, params, total_steps: int) -> tuple[optax.GradientTransformation, Callable]:
    """-> (the optax transformation for these params, the learning-rate schedule).

    Frozen parameters get zero gradients before anything else (so they do not count toward the clipping norm)
    and a zero multiplier at the end, so they stay bit-identical. They keep (zero) optimizer moments: simpler
    than a partitioned optimizer, at the price of that memory.
    """
    schedule = make_schedule(cfg, total_steps)
    settings = match_rules(params, [tuple(r) for r in cfg.get("rules", ())])
    per_leaf = lambda fn: jax.tree.map(fn, settings, is_leaf=_is_setting)  # noqa: E731
    trainable = per_leaf(lambda s: 0.0 if s.get("freeze") else 1.0)
    lr_mult = per_leaf(lambda s: 0.0 if s.get("freeze") else float(s.get("lr_mult", 1.0)))
    decay = jax.tree.map(
        lambda p, s: float(s.get("weight_decay_mult", 1.0)) if p.ndim >= 2 else 0.0,
        params,
        settings,
        is_leaf=_is_setting,
    )

    name = cfg.get("name", "adamw")
    wd = float(cfg.get("weight_decay", 0.0))
    parts = [_scale_leaves(trainable)]
    if cfg.get("clip_norm", 0.0):
        parts.append(optax.clip_by_global_norm(float(cfg.clip_norm)))
    if name in ("adamw", "lamb"):
        parts.append(optax.scale_by_adam(b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8)))
    elif name == "sgd":
        if cfg.get("momentum", 0.0):
            parts.append(optax.trace(decay=float(cfg.momentum), nesterov=bool(cfg.get("nesterov", False))))
    else:
        raise ValueError(f"config key 'optim.name' must be adamw, lamb or sgd, got {name!r}")
    if wd:
        parts.append(_decay(wd, decay))
    if name == "lamb":
        parts.append(optax.scale_by_trust_ratio())
    parts.append(optax.scale_by_learning_rate(schedule))
    parts.append(_scale_leaves(lr_mult))
    return optax.chain(*parts), schedule


def _decay(rate: float, mult) -> optax.GradientTransformation:
    """Decoupled weight decay: updates += rate * mult * params; mult is 0 for norms and biases (ndim < 2)."""

    def update(updates, state, params):
        return jax.tree.map(lambda u, p, k: u + (rate * k) * p if k else u, updates, params, mult), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def frozen_mask(cfg, params) -> Any:
    """Pytree of bools: True for parameters an `optim.rules` entry freezes."""
    settings = match_rules(params, [tuple(r) for r in cfg.get("rules", ())])
    return jax.tree.map(lambda s: bool(s.get("freeze")), settings, is_leaf=_is_setting)
