"""DDPM and DDIM samplers as `lax.scan` loops (reference 4.3, 6.5).

A sampler takes `eps_fn(aux, key, x_t, t) -> eps` (t: int [B], the network's
0-based timestep; key: fresh per step, for the conditional model's hole
noise; aux: any pytree of arrays, e.g. params, labels and the condition),
a PRNG key and the starting noise x_T. Functions are static arguments of the
jitted samplers and everything that varies per call travels in `aux` /
`edit_aux`, so one compiled loop serves every scene: define `eps_fn` once
(at module level or cached), not as a fresh closure per call.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax import lax

from ivid_jax.diffusion import gaussian
from ivid_jax.diffusion.schedules import Schedule

EpsFn = Callable[[Any, Array, Array, Array], Array]
# edit_fn(edit_aux, x0, is_last_step) -> x0: the sampling-time edits of x_0.
EditFn = Callable[[Any, Array, Array], Array]


@functools.partial(jax.jit, static_argnames=('eps_fn', 'clip_denoised'))
def ddpm_sample(eps_fn: EpsFn, aux: Any, key: Array, x_T: Array,  # pylint: disable=invalid-name
                schedule: Schedule, *, clip_denoised: bool = False) -> Array:
  """Ancestral sampling over all T steps with the fixed posterior variance.

  x_0 = sqrt(1/alpha_bar) x_t - sqrt(1/alpha_bar - 1) eps, not clipped as the
  authors sample (clip_denoised: clipped to [-1, 1] as ADM's default), then
  x_{t-1} ~ N(posterior mean, posterior variance); no noise at t = 0.
  """
  b = x_T.shape[0]

  def step(x, inputs):
    t, i = inputs
    k_model, k_noise = jax.random.split(jax.random.fold_in(key, i))
    tt = jnp.full((b,), t, jnp.int32)
    x0 = gaussian.predict_x0(schedule, x, tt, eps_fn(aux, k_model, x, tt))
    if clip_denoised:
      x0 = jnp.clip(x0, -1.0, 1.0)
    mean = schedule.posterior_mean_coef_x0[t] * x0 + schedule.posterior_mean_coef_xt[t] * x
    std = jnp.where(t > 0, jnp.exp(0.5 * schedule.posterior_log_variance[t]), 0.0)
    return mean + std * jax.random.normal(k_noise, x.shape, x.dtype), None

  steps = schedule.num_steps
  ts = jnp.arange(steps - 1, -1, -1, dtype=jnp.int32)
  x, _ = lax.scan(step, x_T, (ts, jnp.arange(steps)))
  return x


def ddim_timesteps(num_steps: int, steps: int) -> tuple[Array, Array]:
  """(t, t_prev), 1-based, for i = steps-1 .. 0: (jump (i + 1), jump i), jump = T // steps."""
  if not 1 <= steps <= num_steps:
    raise ValueError(f'DDIM steps must be in [1, {num_steps}], got {steps}')
  jump = num_steps // steps
  i = jnp.arange(steps - 1, -1, -1, dtype=jnp.int32)
  return jump * (i + 1), jump * i


@functools.partial(jax.jit, static_argnames=('eps_fn', 'steps', 'edit_fn', 'clip_denoised'))
def ddim_sample(eps_fn: EpsFn, aux: Any, key: Array, x_T: Array,  # pylint: disable=invalid-name
                schedule: Schedule, *, steps: int = 50, eta: float = 0.0,
                edit_fn: EditFn | None = None, edit_aux: Any = None,
                clip_denoised: bool = False) -> Array:
  """DDIM (Song et al. 2021) as the authors run it.

  The network sees t - 1 (999, 979, ... for 50 steps); x_0 is edited, eps is
  recomputed from it, and x_prev = sqrt(alpha_bar_prev) x_0 + sqrt(1 -
  alpha_bar_prev - sigma^2) eps + sigma noise. The last step returns x_0.
  clip_denoised clips x_0 to [-1, 1] before the edits (ADM's default; the
  authors sample without it): short-trained networks, whose x_0 at large t is
  far outside the data range, then still give pictures.
  """
  b = x_T.shape[0]
  ts, t_prevs = ddim_timesteps(schedule.num_steps, steps)

  def step(x, inputs):
    t, t_prev, i = inputs
    k_model, k_noise = jax.random.split(jax.random.fold_in(key, i))
    tt = jnp.full((b,), t - 1, jnp.int32)
    x0 = gaussian.predict_x0(schedule, x, tt, eps_fn(aux, k_model, x, tt))
    if clip_denoised:
      x0 = jnp.clip(x0, -1.0, 1.0)
    last = t_prev == 0
    if edit_fn is not None:
      x0 = edit_fn(edit_aux, x0, last)
    eps = gaussian.predict_eps(schedule, x, tt, x0)
    ab = schedule.alpha_bar[t - 1]
    ab_prev = jnp.where(last, 1.0, schedule.alpha_bar[jnp.maximum(t_prev - 1, 0)])
    sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab)) * jnp.sqrt(1 - ab / ab_prev)
    mean = jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1 - ab_prev - sigma ** 2, 0.0)) * eps
    noise = jax.random.normal(k_noise, x.shape, x.dtype)
    return mean + jnp.where(last, 0.0, sigma) * noise, None

  x, _ = lax.scan(step, x_T, (ts, t_prevs, jnp.arange(steps)))
  return x


class InpaintEdit(NamedTuple):
  """Arrays of the authors' x_0 edits (reference 6.5); a weight of 0 switches an edit off.

  cond: [B, H, W, 4] the condition y in [-1, 1]; mask, mask_rgb: {0, 1}
  [B, H, W, 1]; depth_convex: [B, H, W, 1] in [-1, 1] (-1 where nothing was
  rendered); weights: float scalars; replace_rgb_last: bool, the colour
  replacement on the final step too (the authors: off).
  """
  cond: Array
  mask: Array
  mask_rgb: Array
  depth_convex: Array
  replace_rgb: Array | float = 0.1
  replace_depth: Array | float = 0.2
  constrain_depth: Array | float = 0.5
  replace_rgb_last: Array | bool = False


def inpaint_edit(e: InpaintEdit, x0: Array, last: Array) -> Array:
  """The authors' edits of x_0 inside DDIM for the conditional model.

  - replace_rgb w: inside mask_rgb, rgb = w cond + (1 - w) x_0; not on the last step
    unless `replace_rgb_last`.
  - replace_depth w: inside mask, z = w cond + (1 - w) x_0; every step.
  - constrain_depth w: outside mask, z = w max(z, depth_convex) + (1 - w) z, which
    pushes hallucinated depth behind the rubber-sheet / frustum-wall surface.
  """
  rgb, z = x0[..., :3], x0[..., 3:]
  blended = (e.replace_rgb * e.cond[..., :3] + (1 - e.replace_rgb) * rgb) * e.mask_rgb \
      + rgb * (1 - e.mask_rgb)
  rgb = jnp.where(jnp.logical_and(last, jnp.logical_not(e.replace_rgb_last)), rgb, blended)
  z = (e.replace_depth * e.cond[..., 3:] + (1 - e.replace_depth) * z) * e.mask + z * (1 - e.mask)
  constrained = e.constrain_depth * jnp.maximum(z, e.depth_convex) + (1 - e.constrain_depth) * z
  z = z * e.mask + constrained * (1 - e.mask)
  return jnp.concatenate([rgb, z], axis=-1)
