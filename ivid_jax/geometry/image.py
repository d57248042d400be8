"""Image operations shared by the warp, the augmentations and the sampler.

All functions take channels-last float images and are pure jnp, so they jit
and vmap. Where the authors used OpenCV or PIL, the behaviour of those calls is
reproduced (border rules, kernel normalisation, 8-bit rounding) and the
docstring names the call.
"""

from __future__ import annotations

import functools
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax import lax

from ivid_jax.geometry import fusion_barrier


def erode(mask: Array, size: int) -> Array:
  """Binary/min erosion with a size x size box; outside the image never erodes.

  Matches `cv2.erode(mask, np.ones((size, size)))`, whose default border value
  for erosion is +inf.

  Args:
    mask: bool or float [..., H, W].
    size: odd box side.

  Returns:
    Same dtype and shape as `mask`.
  """
  if size <= 1:
    return mask
  if size % 2 != 1:
    raise ValueError(f'erosion box size must be odd, got {size}')
  is_bool = mask.dtype == jnp.bool_
  x = mask.astype(jnp.float32)
  window = (1,) * (x.ndim - 2) + (size, size)
  out = lax.reduce_window(x, jnp.inf, lax.min, window, (1,) * x.ndim, 'SAME')
  return out > 0.5 if is_bool else out.astype(mask.dtype)


def _pil_lanczos_weights(in_size: int, out_size: int) -> np.ndarray:
  """[out_size, in_size] resampling matrix of PIL's LANCZOS resize (Resample.c)."""

  def lanczos(x):
    x = np.abs(x)
    return np.where(x < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)

  scale = in_size / out_size
  filterscale = max(scale, 1.0)
  support = 3.0 * filterscale
  w = np.zeros((out_size, in_size), np.float64)
  for xx in range(out_size):
    center = (xx + 0.5) * scale
    xmin = max(int(center - support + 0.5), 0)
    xmax = min(int(center + support + 0.5), in_size)
    x = np.arange(xmin, xmax)
    k = lanczos((x - center + 0.5) / filterscale)
    w[xx, xmin:xmax] = k / k.sum()
  return w


@functools.lru_cache(maxsize=None)
def _lanczos_bands(in_size: int, out_size: int) -> tuple[int, np.ndarray]:
  """(offset, weights [taps, out_size]) with W[o, factor * o - offset + t] = weights[t, o].

  For an integer factor PIL's weights form a band of fixed width that moves by
  `factor` per output pixel (renormalised where the border clips it).
  """
  w = _pil_lanczos_weights(in_size, out_size)
  factor = in_size // out_size
  nz = [np.nonzero(row)[0] for row in w]
  offset = max(factor * o - idx[0] for o, idx in enumerate(nz))
  taps = max(idx[-1] - (factor * o - offset) + 1 for o, idx in enumerate(nz))
  bands = np.zeros((taps, out_size), np.float32)
  for o, idx in enumerate(nz):
    bands[idx - (factor * o - offset), o] = w[o, idx]
  return offset, bands


def _resample_axis(x: Array, axis: int, out_size: int) -> Array:
  """PIL Lanczos resampling of one axis of x (float, any shape)."""
  in_size = x.shape[axis]
  if in_size % out_size:
    wm = jnp.asarray(_pil_lanczos_weights(in_size, out_size).astype(np.float32))
    return jnp.moveaxis(jnp.tensordot(wm, jnp.moveaxis(x, axis, 0), axes=1,
                                      precision=lax.Precision.HIGHEST), 0, axis)
  # Integer factor: a banded sum of strided slices (18 taps for 3x), about 20x
  # less work than the dense matrix product.
  factor = in_size // out_size
  offset, bands = _lanczos_bands(in_size, out_size)
  taps = bands.shape[0]
  pad_hi = max(0, factor * (out_size - 1) - offset + taps - in_size)
  pads = [(0, 0)] * x.ndim
  pads[axis] = (offset, pad_hi)
  xp = jnp.pad(x, pads)
  shape = [1] * x.ndim
  shape[axis] = out_size
  out = 0.0
  for t in range(taps):
    sl = lax.slice_in_dim(xp, t, t + factor * (out_size - 1) + 1, factor, axis)
    out = out + jnp.asarray(bands[t]).reshape(shape) * sl
  return out


def resize_lanczos_uint8(image: Array, out_size: int) -> Array:
  """PIL `Image.resize((S, S), LANCZOS)` of an 8-bit image, as float values 0..255.

  PIL resamples horizontally then vertically, rounding to 8 bits after each
  pass, with its normalised Lanczos-3 weights.

  Args:
    image: float [..., H, W, C] holding integer values in [0, 255].
    out_size: output height and width.

  Returns:
    float32 [..., out_size, out_size, C], integer-valued in [0, 255].
  """
  # Each pass reads every input element once per tap: materialise the inputs
  # so XLA does not recompute whatever produced them for every tap.
  x = fusion_barrier.materialize(image.astype(jnp.float32))
  x = jnp.clip(jnp.floor(_resample_axis(x, x.ndim - 2, out_size) + 0.5), 0.0, 255.0)
  x = fusion_barrier.materialize(x)
  x = jnp.clip(jnp.floor(_resample_axis(x, x.ndim - 3, out_size) + 0.5), 0.0, 255.0)
  # ...and the output, which callers may sample (gather) many times.
  return fusion_barrier.materialize(x)


def to_uint8_values(x: Array) -> Array:
  """clip(x, 0, 1) * 255 truncated to an integer, as float (`(clip*255).astype(uint8)`)."""
  return jnp.floor(jnp.clip(x, 0.0, 1.0) * 255.0)


def pack_rgb8(values: Array) -> Array:
  """Integer-valued float [..., 3] in [0, 255] -> uint32 [...] (one word per pixel).

  Nearest-texel lookups then need one gather per sample instead of three.
  """
  v = jnp.clip(values, 0.0, 255.0).astype(jnp.uint32)
  return v[..., 0] | (v[..., 1] << 8) | (v[..., 2] << 16)


def unpack_rgb8(packed: Array) -> Array:
  """uint32 [...] from `pack_rgb8` -> float32 [..., 3] values in [0, 255]."""
  p = packed.astype(jnp.uint32)
  return jnp.stack([(p >> s) & jnp.uint32(255) for s in (0, 8, 16)], -1).astype(jnp.float32)


def downsample_color_8bit(color: Array, out_size: int) -> Array:
  """The authors' colour downsampling: 8-bit truncation, PIL Lanczos, / 255.

  Args:
    color: float [..., S, S, C] in [0, 1] (values outside are clipped), or
      uint32 [..., S, S] words of `pack_rgb8` (already truncated: renders of
      packed textures).
    out_size: output side.

  Returns:
    float32 [..., out_size, out_size, C] in [0, 1], multiples of 1/255.
  """
  values = unpack_rgb8(color) if color.dtype == jnp.uint32 else to_uint8_values(color)
  return resize_lanczos_uint8(values, out_size) / 255.0


def block_center(x: Array, factor: int) -> Array:
  """Centre sample (offset (factor - 1) // 2) of each factor x factor block. [..., H, W, C]."""
  o = (factor - 1) // 2
  return x[..., o::factor, o::factor, :]


def block_count(mask: Array, factor: int) -> Array:
  """Number of True samples in each factor x factor block. bool [..., H, W] -> int32."""
  h, w = mask.shape[-2], mask.shape[-1]
  m = mask.astype(jnp.int32).reshape(mask.shape[:-2] + (h // factor, factor, w // factor, factor))
  return m.sum(axis=(-3, -1))


def gaussian_kernel_1d(sigma: Array, size: int = 3) -> Array:
  """OpenCV `getGaussianKernel(size, sigma)` for sigma > 0: normalised, float32 [..., size]."""
  r = (size - 1) / 2.0
  x = jnp.arange(size, dtype=jnp.float32) - r
  sigma = jnp.asarray(sigma, jnp.float32)[..., None]
  k = jnp.exp(-jnp.square(x) / (2.0 * jnp.square(sigma)))
  return k / k.sum(-1, keepdims=True)


def gaussian_blur(image: Array, sigma: Array, size: int = 3) -> Array:
  """`cv2.GaussianBlur(image, (size, size), sigma)` with the default reflect-101 border.

  Args:
    image: float [H, W, C].
    sigma: float scalar standard deviation in pixels (may be traced).
    size: odd static kernel size.

  Returns:
    float32 [H, W, C].
  """
  k = gaussian_kernel_1d(sigma, size)
  r = size // 2
  x = jnp.pad(image.astype(jnp.float32), ((r, r), (r, r), (0, 0)), mode='reflect')
  h, w = image.shape[0], image.shape[1]
  x = sum(k[i] * x[:, i:i + w] for i in range(size))
  x = sum(k[i] * x[i:i + h] for i in range(size))
  return x
