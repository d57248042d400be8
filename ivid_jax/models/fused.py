"""GroupNorm (+ folded bias, FiLM scale-shift, SiLU) with a hand-written VJP, for XLA:CPU.

XLA's CPU backend runs the autodiff of `silu(group_norm(x + b) * (1 + s) + t)` as a dozen
memory-bound passes over the activation: squares materialised for the variance, the
reductions split into reduce-windows by its tree-reduction rewriter, the sigmoid saved and
re-read, broadcasts of [B, G] statistics through 5-D reshapes. This op makes it the minimum:

  forward:  per-(image, channel) sums of x and x^2 (one read), then one elementwise pass.
  backward: per-(image, channel) sums of dh and dh * x (one read of x and the cotangent),
            then dx = A * dh + B * x + C (one more read, one write); dh is SiLU's derivative
            recomputed from x, so nothing of activation size is saved besides x itself.

Every parameter gradient (gamma, beta, the folded bias, the FiLM scale and shift) comes from
those [B, C] sums, so none of them costs a pass of its own. Numerics are those of Flax's
`GroupNorm` (float32 statistics, var = E[x^2] - E[x]^2 clipped at 0, eps inside the rsqrt);
the gradients equal autodiff of the plain expression up to float32 rounding
(tests/fused_test.py). Accelerators keep XLA's own fusion of the plain expression: the UNet
picks this op only on CPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array

from ivid_jax.geometry import fusion_barrier


def _channel_sums(v: Array) -> Array:
  """[B, H, W, C] -> float32 [B, C], summed over H and W."""
  b, h, w, c = v.shape
  return jnp.sum(v.reshape(b, h * w, c), axis=1)


def _group_sum(v: Array, groups: int) -> Array:
  """[B, C] -> [B, C]: each channel gets the sum over its group."""
  b, c = v.shape
  s = jnp.sum(v.reshape(b, groups, c // groups), axis=2, keepdims=True)
  return jnp.broadcast_to(s, (b, groups, c // groups)).reshape(b, c)


def _stats(x, bias, groups, eps):
  """Per-(image, channel) copies of the group mean and 1/std of x + bias, and sum_hw x."""
  b, h, w, c = x.shape
  hw = h * w
  s1 = _channel_sums(x)
  s2 = _channel_sums(jnp.square(x))
  # Sums of x + bias from those of x: the bias never needs a pass of its own.
  s2 = s2 + bias * (2.0 * s1 + hw * bias)
  n = hw * (c // groups)
  mean = _group_sum(s1 + hw * bias, groups) / n
  var = jnp.maximum(_group_sum(s2, groups) / n - jnp.square(mean), 0.0)
  return mean, jax.lax.rsqrt(var + eps), s1


def _coefficients(x, gamma, beta, bias, scale, shift, groups, eps):
  mean, rstd, s1 = _stats(x, bias, groups, eps)
  film = 1.0 + scale
  a = rstd * gamma * film  # [B, C]: h = a * x + c
  c = (beta - mean * rstd * gamma) * film + shift + a * bias
  # Left to itself, XLA:CPU fuses these [B, C] expressions into the pass over x and
  # recomputes them for every pixel (several times slower than the pass itself).
  a, c = fusion_barrier.materialize((a, c))
  return a, c, mean, rstd, s1


def _apply(x, a, c, act):
  h = x * a[:, None, None, :] + c[:, None, None, :]
  return h * jax.nn.sigmoid(h) if act else h


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8))
def _group_norm_act(x, gamma, beta, bias, scale, shift, groups, eps, act):
  a, c, *_ = _coefficients(x, gamma, beta, bias, scale, shift, groups, eps)
  return _apply(x, a, c, act)


def _fwd(x, gamma, beta, bias, scale, shift, groups, eps, act):
  a, c, mean, rstd, s1 = _coefficients(x, gamma, beta, bias, scale, shift, groups, eps)
  return _apply(x, a, c, act), (x, gamma, beta, bias, scale, a, c, mean, rstd, s1)


def _bwd(groups, eps, act, res, g):
  del eps
  x, gamma, beta, bias, scale, a, c, mean, rstd, s1 = res
  b, height, width, channels = x.shape
  hw = height * width
  n = hw * (channels // groups)
  g = g.astype(jnp.float32)
  if act:
    h = x * a[:, None, None, :] + c[:, None, None, :]
    sig = jax.nn.sigmoid(h)
    dh = g * (sig * (1.0 + h * (1.0 - sig)))
  else:
    dh = g
  sum_dh = _channel_sums(dh)  # [B, C]
  sum_dh_x = _channel_sums(dh * x)
  film = 1.0 + scale
  # sum_hw dh * xhat, with xhat the normalised x + bias.
  t = rstd * (sum_dh_x + (bias - mean) * sum_dh)
  p = _group_sum(gamma * film * sum_dh, groups)
  q = _group_sum(gamma * film * t, groups)
  coef_x = -jnp.square(rstd) * q / n
  coef_1 = -rstd * p / n + coef_x * (bias - mean)
  coef_x, coef_1 = fusion_barrier.materialize((coef_x, coef_1))
  dx = dh * a[:, None, None, :] + x * coef_x[:, None, None, :] + coef_1[:, None, None, :]
  d_bias = a * sum_dh + coef_x * s1 + hw * coef_1
  d_gamma = jnp.sum(film * t, axis=0)
  d_beta = jnp.sum(film * sum_dh, axis=0)
  d_scale = gamma * t + beta * sum_dh
  return dx, d_gamma, d_beta, d_bias, d_scale, sum_dh


_group_norm_act.defvjp(_fwd, _bwd)


def group_norm_act(x: Array, gamma: Array, beta: Array, *, groups: int, eps: float,
                   bias: Array | None = None, scale: Array | None = None,
                   shift: Array | None = None, act: bool = True) -> Array:
  """act((GroupNorm(x + bias) * gamma + beta) * (1 + scale) + shift), statistics in float32.

  Args:
    x: [B, H, W, C], any float dtype (computed in float32).
    gamma, beta: [C] GroupNorm scale and offset.
    groups: GroupNorm groups (divides C).
    eps: added to the variance.
    bias: [C] or [B, C] added to x before the norm (the preceding convolution's bias, or
      the time embedding of a block without scale-shift); None: 0.
    scale, shift: [B, C] FiLM conditioning; None: 0.
    act: apply SiLU.

  Returns:
    float32 [B, H, W, C].
  """
  b, _, _, ch = x.shape
  if ch % groups:
    raise ValueError(f'{ch} channels are not divisible into {groups} groups')
  f32 = lambda v: jnp.zeros((b, ch), jnp.float32) if v is None else jnp.broadcast_to(
      jnp.asarray(v, jnp.float32), (b, ch))
  return _group_norm_act(x.astype(jnp.float32), gamma.astype(jnp.float32),
                         beta.astype(jnp.float32), f32(bias), f32(scale), f32(shift), groups,
                         float(eps), bool(act))
