"""Augmentations of the conditional model's training pairs (reference 2.6, 10.2).

Each function takes a PRNG key and a batch and uses one key per example
(`jax.random.split(key, B)`, then `vmap`), so a batch is reproducible from its
key and independent of how it is sharded. Images are float, channels last,
in [0, 1]; masks are float {0, 1} [..., H, W, 1].

In the authors' order: pre-warp noise on the RGBD to be warped, the warp,
(post-warp noise, off in every config), blur, RGB erosion. They are not
jitted on their own: they run inside the jitted training pair
(`conditional.make_training_pair`), the boundary where callers need jit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array

from ivid_jax.geometry import image as image_ops

PREWARP_MAX_SIGMA = 0.005
POSTWARP_MAX_SIGMA = 0.03
BLUR_PROB = 0.8
BLUR_KERNEL = 3
# Erosion box sides are 2 k + 1 for k uniform in {0, ..., 4}: {1, 3, 5, 7, 9}.
ERODE_MAX_STEPS = 4


def _per_example(fn):
  """Lifts fn(key, *examples) to fn(key, *batches) with one key per example."""

  @functools.wraps(fn)
  def batched(key: Array, *batches: Array, **kwargs) -> Array:
    keys = jax.random.split(key, batches[0].shape[0])
    return jax.vmap(lambda k, *xs: fn(k, *xs, **kwargs))(keys, *batches)

  return batched


def _gaussian_noise(key: Array, x: Array, max_sigma: float) -> Array:
  k_sigma, k_noise = jax.random.split(key)
  sigma = max_sigma * jax.random.uniform(k_sigma)
  return x + sigma * jax.random.normal(k_noise, x.shape, x.dtype)


@_per_example
def prewarp_noise(key: Array, rgbd: Array, max_sigma: float = PREWARP_MAX_SIGMA) -> Array:
  """Adds N(0, s^2) noise, s ~ U(0, max_sigma) per example, to all 4 channels.

  Args:
    key: PRNG key.
    rgbd: float [B, H, W, 4] (colour and z-buffer depth: the depth is perturbed too).

  Returns:
    float [B, H, W, 4].
  """
  return _gaussian_noise(key, rgbd, max_sigma)


@_per_example
def postwarp_noise(key: Array, cond: Array, max_sigma: float = POSTWARP_MAX_SIGMA) -> Array:
  """Adds N(0, s^2) noise, s ~ U(0, max_sigma), to a warped condition [B, H, W, C]."""
  return _gaussian_noise(key, cond, max_sigma)


@_per_example
def blur(key: Array, clean_rgb: Array, cond_rgb: Array, prob: float = BLUR_PROB,
         size: int = BLUR_KERNEL) -> Array:
  """With probability `prob`, replaces the condition's RGB by the blurred clean image.

  The blur is `cv2.GaussianBlur(clean, (size, size), s)` with s ~ U(0, 1) + 1e-3
  and reflect-101 borders, of the clean, un-warped target (not of the warp):
  the holes are cut later by the mask.

  Args:
    key: PRNG key.
    clean_rgb: float [B, H, W, 3] the clean target x0 before any noise.
    cond_rgb: float [B, H, W, 3] the warped condition's RGB.

  Returns:
    float [B, H, W, 3].
  """
  k_apply, k_sigma = jax.random.split(key)
  sigma = jax.random.uniform(k_sigma) + 1e-3
  blurred = image_ops.gaussian_blur(clean_rgb, sigma, size)
  return jnp.where(jax.random.uniform(k_apply) < prob, blurred, cond_rgb)


def erode_steps(mask: Array, steps: Array, max_steps: int = ERODE_MAX_STEPS) -> Array:
  """Erodes [H, W, 1] with a (2 steps + 1)^2 box (`steps` traced, <= max_steps).

  Box minima compose (k 3x3 erosions are one (2k+1)^2 erosion, with the +inf
  border of cv2.erode), so all radii come from one chain of 3x3 erosions and
  the shapes stay static.
  """
  levels = [mask[..., 0]]
  for _ in range(max_steps):
    levels.append(image_ops.erode(levels[-1], 3))
  return jnp.stack(levels)[steps][..., None]


@_per_example
def erode_rgb(key: Array, mask: Array, max_steps: int = ERODE_MAX_STEPS) -> Array:
  """`mask_rgb`: the warp mask eroded with a random odd box side in {1, 3, ..., 2 max_steps + 1}.

  Side 1 (probability 1 / (max_steps + 1)) leaves the mask unchanged. The
  condition's RGB is then multiplied by it; its depth is not ("texture erosion").

  Args:
    key: PRNG key.
    mask: float {0, 1} [B, H, W, 1].

  Returns:
    float {0, 1} [B, H, W, 1], a subset of `mask`.
  """
  steps = jax.random.randint(key, (), 0, max_steps + 1)
  return erode_steps(mask, steps, max_steps)
