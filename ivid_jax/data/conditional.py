"""The conditional model's training pairs, built on device (reference 2.5-2.6).

`make_training_pair` is the authors' WarpDataset as one jit-able function of a
batch: keep the clean x0, add pre-warp noise to all four channels, warp to the
random camera V1 and back (`geometry.warp.forward_backward_warp`, on the same
mesh and rasteriser code as the sampler's conditions, which `render_views`
aggregates from earlier views), optionally post-warp noise, replace the
RGB by the blurred clean image with probability 0.8, erode the mask for the
RGB, cut the condition by both masks and map it to [-1, 1] (holes -1).

Every random draw of example i comes from its own key `keys[i]` (the loader
derives it from (seed, epoch, source index)), and the warp is per example, so
an example's pair does not depend on its neighbours in the batch.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from jax import Array

from ivid_jax.data import augment
from ivid_jax.geometry import cameras
from ivid_jax.geometry import warp


def camera_modelview(camera: Mapping[str, Array]) -> Array:
  """{'yaw', 'pitch', 'radius': [B], 'target': [B, 3]} -> V1 modelviews float32 [B, 4, 4]."""
  return cameras.orbit_camera(camera['yaw'], camera['pitch'], camera['radius'],
                              camera['target'])


def as_keys(keys: Array) -> Array:
  """Typed PRNG keys [B] from typed keys or raw uint32 [B, 2] threefry key data."""
  if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
    return keys
  return jax.random.wrap_key_data(jnp.asarray(keys, jnp.uint32))


def _each(fn, keys: Array, *batches: Array, **kwargs) -> Array:
  """Applies augment's fn(key, batch) with example i's own key (batch of one each)."""
  return jax.vmap(lambda k, *xs: fn(k, *(x[None] for x in xs), **kwargs)[0])(keys, *batches)


def make_training_pair(keys: Array, x0: Array, camera: Mapping[str, Array], *, ssaa: int = 3,
                       padding: Any = 'image', prewarp_noise: bool = True,
                       postwarp_noise: bool = False, blur_prob: float = augment.BLUR_PROB,
                       erode_max_steps: int = augment.ERODE_MAX_STEPS,
                       atol: float = 0.02, rtol: float = 0.02,
                       group: int | None = None) -> dict[str, Array]:
  """A batch of the conditional model's training pairs.

  Args:
    keys: per-example PRNG keys [B] (typed) or raw uint32 key data [B, 2].
    x0: float32 [B, H, W, 4] clean targets in [-1, 1] (RGB, z-buffer depth).
    camera: V1 per example: yaw, pitch (radians), radius float [B], target float [B, 3].
    ssaa: supersampling of the warp's renders (3 in training).
    padding: mesh skirt of the source mesh; 'image' means H pixels (the
      authors' 128 px at 128 px), else as `forward_backward_warp`.
    prewarp_noise: add N(0, s^2), s ~ U(0, 0.005), to the RGBD before the warp.
    postwarp_noise: add N(0, s^2), s ~ U(0, 0.03), to the warped RGBD (off in
      every config of the authors).
    blur_prob: probability of replacing the condition's RGB by the blurred
      clean image (0 disables).
    erode_max_steps: mask_rgb erodes with a box of side 2k + 1, k uniform in
      {0, ..., erode_max_steps} (0 disables: mask_rgb = mask).
    atol, rtol: the warp's discontinuity tolerances (the authors' 0.02). They
      compare neighbouring pixels, so a smooth slanted surface trips them at
      low resolution: scale them by 128 / H below the authors' 128 px.
    group: images rasterised together (see forward_backward_warp).

  Returns:
    {'x0': float32 [B, H, W, 4] in [-1, 1] (the input),
     'y': float32 [B, H, W, 4] condition in [-1, 1], -1 in holes and eroded RGB,
     'mask': float32 {0, 1} [B, H, W, 1],
     'mask_rgb': float32 {0, 1} [B, H, W, 1], a subset of mask}.
  """
  keys = as_keys(keys)  # outside jit: raw and typed keys share one compilation
  if keys.shape != (x0.shape[0],):
    raise ValueError(f'need one key per example: keys {keys.shape}, x0 {x0.shape}')
  return _make_training_pair(keys, x0, camera, ssaa=ssaa, padding=padding,
                             prewarp_noise=prewarp_noise, postwarp_noise=postwarp_noise,
                             blur_prob=blur_prob, erode_max_steps=erode_max_steps,
                             atol=float(atol), rtol=float(rtol), group=group)


@functools.partial(jax.jit, static_argnames=('ssaa', 'padding', 'prewarp_noise', 'postwarp_noise',
                                             'blur_prob', 'erode_max_steps', 'atol', 'rtol',
                                             'group'))
def _make_training_pair(keys, x0, camera, *, ssaa, padding, prewarp_noise, postwarp_noise,
                        blur_prob, erode_max_steps, atol, rtol, group):
  """make_training_pair with typed keys [B]."""
  x0 = jnp.asarray(x0, jnp.float32)
  split = jax.vmap(lambda k: jax.random.split(k, 4))(keys)  # [B, 4]
  k_pre, k_post, k_blur, k_erode = (split[:, i] for i in range(4))

  clean = (x0 + 1.0) / 2.0  # the reference works in [0, 1]
  rgbd = _each(augment.prewarp_noise, k_pre, clean) if prewarp_noise else clean
  warped = warp.forward_backward_warp(rgbd, camera_modelview(camera), ssaa=ssaa,
                                      padding=padding, atol=atol, rtol=rtol, group=group)
  y = jnp.concatenate([warped.color, warped.depth], axis=-1)
  mask = warped.mask
  if postwarp_noise:
    y = _each(augment.postwarp_noise, k_post, y)
  y_rgb, y_z = y[..., :3], y[..., 3:]
  if blur_prob > 0:
    y_rgb = _each(augment.blur, k_blur, clean[..., :3], y_rgb, prob=blur_prob)
  if erode_max_steps > 0:
    mask_rgb = _each(augment.erode_rgb, k_erode, mask, max_steps=erode_max_steps)
  else:
    mask_rgb = mask
  y = jnp.concatenate([y_rgb * mask_rgb, y_z], axis=-1) * mask
  return {'x0': x0, 'y': y * 2.0 - 1.0, 'mask': mask, 'mask_rgb': mask_rgb}


def pair_from_batch(batch: Mapping[str, Any], **kwargs) -> dict[str, Array]:
  """`make_training_pair` of a conditional loader batch, labels passed through."""
  pair = make_training_pair(batch['rng'], batch['x0'], batch['camera'], **kwargs)
  if 'label' in batch:
    pair['label'] = batch['label']
  return pair
