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
from typing import Any, NamedTuple

import jax
import optax
from flax import traverse_util

RULE_SETTINGS = ("freeze", "lr_mult", "weight_decay_mult")


def make_schedule(cfg, total_steps: int) -> Callable[[jax.Array], jax.Array]:
    warmup = int(cfg.warmup_steps)
    lr = float(cfg.lr)
    end = lr * float(cfg.end_lr_factor)
    decay_steps = max(total_steps - warmup, 1)
    kind = cfg.schedule
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


class Optimizer(NamedTuple):
    """What a run's optimizer is: the transformation, its learning-rate schedule, and which params are frozen
    (a pytree of bools like the params: the step stops their gradients, so XLA drops their backward pass)."""

    tx: optax.GradientTransformation
    schedule: Callable
    frozen: Any


def build_optimizer(cfg, params, total_steps: int) -> Optimizer:
    """The optimizer `config.optim` describes for these params (abstract shapes suffice).

    `optim.rules` are matched once, here: the same match decides the frozen mask, learning-rate multipliers and
    weight decay. Frozen parameters get zero gradients before anything else (so they do not count toward the
    clipping norm) and a zero multiplier at the end, so they stay bit-identical. They keep (zero) optimizer
    moments: simpler than a partitioned optimizer, at the price of that memory.
    """
    schedule = make_schedule(cfg, total_steps)
    settings = match_rules(params, [tuple(r) for r in cfg.rules])
    per_leaf = lambda fn: jax.tree.map(fn, settings, is_leaf=_is_setting)  # noqa: E731
    frozen = per_leaf(lambda s: bool(s.get("freeze")))
    trainable = per_leaf(lambda s: 0.0 if s.get("freeze") else 1.0)
    lr_mult = per_leaf(lambda s: 0.0 if s.get("freeze") else float(s.get("lr_mult", 1.0)))
    decay = jax.tree.map(
        lambda p, s: float(s.get("weight_decay_mult", 1.0)) if p.ndim >= 2 else 0.0,
        params,
        settings,
        is_leaf=_is_setting,
    )

    parts = [_scale_leaves(trainable)]
    if cfg.clip_norm:
        parts.append(optax.clip_by_global_norm(float(cfg.clip_norm)))
    if cfg.name in ("adamw", "lamb"):
        parts.append(optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))
    elif cfg.name == "sgd":
        if cfg.momentum:
            parts.append(optax.trace(decay=float(cfg.momentum), nesterov=bool(cfg.nesterov)))
    else:
        raise ValueError(f"config key 'optim.name' must be adamw, lamb or sgd, got {cfg.name!r}")
    if cfg.weight_decay:
        parts.append(_decay(float(cfg.weight_decay), decay))
    if cfg.name == "lamb":
        parts.append(optax.scale_by_trust_ratio())
    parts.append(optax.scale_by_learning_rate(schedule))
    parts.append(_scale_leaves(lr_mult))
    return Optimizer(optax.chain(*parts), schedule, frozen)


def _decay(rate: float, mult) -> optax.GradientTransformation:
    """Decoupled weight decay: updates += rate * mult * params; mult is 0 for norms and biases (ndim < 2)."""

    def update(updates, state, params):
        return jax.tree.map(lambda u, p, k: u + (rate * k) * p if k else u, updates, params, mult), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)
