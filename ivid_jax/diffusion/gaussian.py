"""The forward process, x_0 / epsilon conversions and the training loss (reference 4.1).

The network predicts epsilon; the loss is the plain MSE over batch, pixels and
channels, RGB and depth weighted alike, with no mask and no timestep weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from ivid_jax.diffusion.schedules import Schedule


def _at(values: Array, t: Array, x: Array) -> Array:
  """values[t] broadcast against x [B, ...]."""
  return values[t].reshape((-1,) + (1,) * (x.ndim - 1))


def q_sample(schedule: Schedule, x0: Array, t: Array, eps: Array) -> Array:
  """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (eq. 4 of Ho et al.). t: int [B]."""
  a = _at(schedule.alpha_bar, t, x0)
  return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * eps


def predict_x0(schedule: Schedule, x_t: Array, t: Array, eps: Array) -> Array:
  """x_0 = sqrt(1 / alpha_bar) x_t - sqrt(1 / alpha_bar - 1) eps (never clipped)."""
  a = _at(schedule.alpha_bar, t, x_t)
  return jnp.sqrt(1.0 / a) * x_t - jnp.sqrt(1.0 / a - 1.0) * eps


def predict_eps(schedule: Schedule, x_t: Array, t: Array, x0: Array) -> Array:
  """epsilon consistent with x_t and an (edited) x_0."""
  a = _at(schedule.alpha_bar, t, x_t)
  return (jnp.sqrt(1.0 / a) * x_t - x0) / jnp.sqrt(1.0 / a - 1.0)


def sample_timesteps(key: Array, batch: int, num_steps: int) -> Array:
  """t ~ Uniform{0, ..., T-1}, one per example. int32 [B]."""
  return jax.random.randint(key, (batch,), 0, num_steps)


def eps_mse(eps_pred: Array, eps: Array) -> Array:
  """The authors' objective: mean of (eps_pred - eps)^2 over everything. float32 scalar."""
  return jnp.mean(jnp.square(eps_pred.astype(jnp.float32) - eps.astype(jnp.float32)))
