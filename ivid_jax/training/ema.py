"""Exponential moving averages of the parameters, several rates at once (reference 5).

The authors keep one average at rate 0.9999, updated after every optimiser
step from step 0 (initialised to the initial weights), over the float32 master
parameters. At that rate the average still holds about 94% of the initial
weights after 650 steps, so a short run (the synthetic configs, a smoke run)
previews noise: `warmup=True` uses decay min(d, (1 + n) / (10 + n)) at update n
instead, which averages over roughly the last n / 10 .. n steps early on and
reaches d after about 10 / (1 - d) updates.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import Array


def decay_at(decay: float, count: Array, warmup: bool) -> Array:
  """The decay of update number `count` (0-based, int []): d, or min(d, (1 + n) / (10 + n))."""
  if not warmup:
    return jnp.float32(decay)
  n = jnp.asarray(count, jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + n) / (10.0 + n))


def init(params: Any, decays: Sequence[float]) -> tuple[Any, ...]:
  """One average per rate, each starting at `params` (float32 copies)."""
  return tuple(jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params) for _ in decays)


def update(ema: tuple[Any, ...], params: Any, decays: Sequence[float], count: Array,
           warmup: bool = False) -> tuple[Any, ...]:
  """ema_i <- d_i ema_i + (1 - d_i) params, for every rate d_i (decay_at of `count`)."""
  if len(ema) != len(decays):
    raise ValueError(f'{len(ema)} averages but {len(decays)} decays')
  out = []
  for avg, decay in zip(ema, decays):
    d = decay_at(decay, count, warmup)
    out.append(jax.tree.map(lambda a, p, d=d: d * a + (1.0 - d) * p.astype(jnp.float32),
                            avg, params))
  return tuple(out)
