"""The train state: everything a step reads and writes, and everything a checkpoint must hold to resume exactly."""

from __future__ import annotations

from typing import Any

import jax
from flax import struct


@struct.dataclass
class TrainState:
    """step: int32 scalar; params / opt_state: pytrees; rng: raw uint32 key data [2] (checkpointable as is).

    The per-step randomness is derived as fold_in(rng, step), so a resumed run draws exactly the numbers the
    uninterrupted run would have.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array

    def step_key(self) -> jax.Array:
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)
