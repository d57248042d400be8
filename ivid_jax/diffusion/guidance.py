"""Classifier-free guidance and the conditional model's inputs (reference 2.7, 4.2).

Guidance: eps = (1 + w) eps(x, c) - w eps(x, null), so w = 0 is the plain
conditional prediction (one forward pass) and the authors' default is w = 3.
Both halves run as one batched forward pass. For the conditional (inpainting)
model the image condition is the same in both halves: guidance acts on the
class label only.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import Array

NULL_CLASS = -1
DEFAULT_GUIDANCE = 3.0  # the authors' sample.py default (their evaluation used 0.5)
LABEL_DROPOUT = 0.1  # p_uncond of every released config

# apply_fn(x, t, classes) -> eps, e.g. functools.partial(model.apply, {'params': p}).
ApplyFn = Callable[[Array, Array, Array | None], Array]


def drop_labels(key: Array, classes: Array, p: float = LABEL_DROPOUT) -> Array:
  """Replaces each label by the null class with probability p (training-time CFG)."""
  return jnp.where(jax.random.uniform(key, classes.shape) < p, NULL_CLASS, classes)


def guided_eps(apply_fn: ApplyFn, x: Array, t: Array, classes: Array | None,
               guidance: float = DEFAULT_GUIDANCE) -> Array:
  """(1 + w) eps(x, t, classes) - w eps(x, t, null) as one forward pass of 2B.

  `guidance` is static: w = 0, or classes None, runs a single pass of B.
  """
  if classes is None or guidance == 0:
    return apply_fn(x, t, classes)
  b = x.shape[0]
  both = apply_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                  jnp.concatenate([classes, jnp.full_like(classes, NULL_CLASS)]))
  eps_c, eps_u = both[:b], both[b:]
  return (1.0 + guidance) * eps_c - guidance * eps_u


def inpaint_inputs(key: Array, x_t: Array, y: Array, mask: Array, mask_rgb: Array) -> Array:
  """The conditional UNet's 10 input channels (reference 2.7), NHWC.

  [x_t (4), mask_rgb, y_rgb mask_rgb + n_rgb (1 - mask_rgb), y_z mask + n_z (1 - mask), mask]
  with n fresh standard normal noise: holes reach the network as noise, not -1.

  Args:
    key: PRNG key for the hole noise (a new one every training and sampling step).
    x_t: [B, H, W, 4] noisy RGBD.
    y: [B, H, W, 4] condition in [-1, 1].
    mask, mask_rgb: {0, 1} [B, H, W, 1].

  Returns:
    [B, H, W, 10].
  """
  n = jax.random.normal(key, y.shape, y.dtype)
  rgb = y[..., :3] * mask_rgb + n[..., :3] * (1.0 - mask_rgb)
  z = y[..., 3:] * mask + n[..., 3:] * (1.0 - mask)
  return jnp.concatenate([x_t, mask_rgb, rgb, z, mask], axis=-1)


@functools.lru_cache(maxsize=None)
def make_eps_fn(model: Any, guidance: float = DEFAULT_GUIDANCE, inpaint: bool = False):
  """The sampler's `eps_fn(aux, key, x_t, t)` for a UNet, built once per (model, guidance).

  aux: {'params', 'classes' (int [B] or None)} and, for the conditional model
  (inpaint=True), {'y', 'mask', 'mask_rgb'}. Cached so that samplers, which
  take it as a static argument, compile once.
  """

  def eps_fn(aux: dict, key: Array, x_t: Array, t: Array) -> Array:
    apply = lambda x, tt, c: model.apply({'params': aux['params']}, x, tt, c)
    x = inpaint_inputs(key, x_t, aux['y'], aux['mask'], aux['mask_rgb']) if inpaint else x_t
    return guided_eps(apply, x, t, aux.get('classes'), guidance)

  return eps_fn


def drop_image_condition(key: Array, mask: Array, mask_rgb: Array,
                         p: float) -> tuple[Array, Array]:
  """Image-condition dropout of the conditional model (the authors' p_uncond_img, reference 4.2).

  With probability p per example both masks become 0, so `inpaint_inputs` gives
  that example [x_t, 0, noise, noise, 0]: all 10 channels, no condition. (The
  authors' version builds 9 channels, which their 10-channel network cannot take.)

  Args:
    key: PRNG key.
    mask, mask_rgb: {0, 1} [B, H, W, 1].
    p: dropout probability (0: off).

  Returns:
    (mask, mask_rgb) with the dropped examples zeroed.
  """
  keep = jax.random.uniform(key, (mask.shape[0],) + (1,) * (mask.ndim - 1)) >= p
  return mask * keep.astype(mask.dtype), mask_rgb * keep.astype(mask_rgb.dtype)
