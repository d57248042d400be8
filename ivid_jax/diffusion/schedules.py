"""Noise schedules and the quantities derived from them (Ho et al. 2020; reference 4.1).

Computed in float64 with numpy (as the authors do), then stored as float32
arrays indexed by the 0-based timestep t = 0..T-1.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array


def linear_betas(num_steps: int = 1000) -> np.ndarray:
  """The authors' linear schedule: beta from 0.1 / T to 20 / T (1e-4 .. 0.02 at T = 1000)."""
  return np.linspace(0.1 / num_steps, 20.0 / num_steps, num_steps, dtype=np.float64)


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
  """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos^2(((t / T) + s) / (1 + s) pi / 2)."""
  f = lambda t: math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2
  return np.array([min(1 - f(i + 1) / f(i), max_beta) for i in range(num_steps)], np.float64)


class Schedule(NamedTuple):
  """Per-timestep constants, each float32 [T].

  alpha_bar[t] = prod_{s <= t} (1 - beta_s); alpha_bar_prev[t] = alpha_bar[t - 1]
  (1 at t = 0); posterior_* describe q(x_{t-1} | x_t, x_0) (eq. 6-7 of Ho et al.).
  """
  betas: Array
  alpha_bar: Array
  alpha_bar_prev: Array
  posterior_variance: Array
  posterior_log_variance: Array
  posterior_mean_coef_x0: Array
  posterior_mean_coef_xt: Array

  @property
  def num_steps(self) -> int:
    return self.betas.shape[0]


def make_schedule(name: str = 'linear', num_steps: int = 1000) -> Schedule:
  """Schedule by name: 'linear' (the authors') or 'cosine'."""
  if name == 'linear':
    betas = linear_betas(num_steps)
  elif name == 'cosine':
    betas = cosine_betas(num_steps)
  else:
    raise ValueError(f"unknown noise schedule {name!r}: use 'linear' or 'cosine'")
  alpha_bar = np.cumprod(1.0 - betas)
  alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
  variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
  # The variance is 0 at t = 0: its log reuses t = 1's (as ADM's code does).
  log_variance = np.log(np.append(variance[1], variance[1:]))
  coef_x0 = betas * np.sqrt(alpha_bar_prev) / (1.0 - alpha_bar)
  coef_xt = (1.0 - alpha_bar_prev) * np.sqrt(1.0 - betas) / (1.0 - alpha_bar)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  return Schedule(f32(betas), f32(alpha_bar), f32(alpha_bar_prev), f32(variance),
                  f32(log_variance), f32(coef_x0), f32(coef_xt))
