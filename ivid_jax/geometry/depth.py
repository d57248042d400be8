"""Depth encodings: z-buffer <-> linear depth <-> disparity, and the depth-edge test.

Encodings (reference sections 1.2, 1.3, 2.5):
- linear depth `D`: distance along the optical axis (not along the ray).
- disparity: 1 / D.
- z-buffer `z` in [0, 1]: OpenGL window depth of a perspective projection with
  the given near / far, z = (1/near - 1/D) / (1/near - 1/far). It is affine in
  disparity; z = 0 at D = near and z = 1 at D = far.

Two sets of constants are in use and must be kept apart: training data and the
training warp use near 0.5 / far 100; the sampler reinterprets generated depth
with near 0.6 / far 5.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

# Training-data encoding (reference 1.2) and sampling-time lifting (reference 6.1).
TRAIN_NEAR, TRAIN_FAR = 0.5, 100.0
SAMPLE_NEAR, SAMPLE_FAR = 0.6, 5.0


def linearize_depth(z: ArrayLike, near: float = TRAIN_NEAR, far: float = TRAIN_FAR) -> Array:
  """z-buffer -> linear depth D = n f / (f - z (f - n)), z clipped to [1e-6, 1 - 1e-6]."""
  z = jnp.clip(jnp.asarray(z, jnp.float32), 1e-6, 1.0 - 1e-6)
  return near * far / (far - (far - near) * z)


def project_depth(depth: ArrayLike, near: float = TRAIN_NEAR, far: float = TRAIN_FAR) -> Array:
  """Linear depth -> z-buffer, D clipped to [near, far] first."""
  depth = jnp.clip(jnp.asarray(depth, jnp.float32), near, far)
  return (1.0 / near - 1.0 / depth) / (1.0 / near - 1.0 / far)


def disparity_to_zbuffer(disparity: ArrayLike, near: float = TRAIN_NEAR,
                         far: float = TRAIN_FAR) -> Array:
  """Disparity (1/D) -> z-buffer, clipped to [0, 1] (the data's `z_buffer` mode)."""
  disparity = jnp.asarray(disparity, jnp.float32)
  return jnp.clip((disparity - 1.0 / near) / (1.0 / far - 1.0 / near), 0.0, 1.0)


def zbuffer_to_disparity(z: ArrayLike, near: float = TRAIN_NEAR, far: float = TRAIN_FAR) -> Array:
  """z-buffer -> disparity 1/D (exact inverse of `disparity_to_zbuffer` on [0, 1])."""
  z = jnp.asarray(z, jnp.float32)
  return 1.0 / near + z * (1.0 / far - 1.0 / near)


def depth_edge(z: ArrayLike, atol: float = 0.02, rtol: float = 0.02) -> Array:
  """Pixels away from depth discontinuities (the reference's `depth_edge`).

  Two neighbours (horizontal, vertical or either diagonal) are discontinuous if
  |z1 - z2| > atol and |1/z1 - 1/z2| > rtol, with z floored at 1e-6. Each such
  pair adds 1 to both pixels; a pixel passes when its count is below 3.

  Args:
    z: float [..., H, W] or [..., H, W, 1] z-buffer map (the test runs on the
      encoded values, not on linear depth).
    atol, rtol: tolerances.

  Returns:
    bool, same shape as `z`: True where the pixel passes.
  """
  z = jnp.asarray(z, jnp.float32)
  squeeze = z.ndim >= 3 and z.shape[-1] == 1
  if squeeze:
    z = z[..., 0]
  z = jnp.maximum(z, 1e-6)
  inv = 1.0 / z

  def disc(a, b, ia, ib):
    return ((jnp.abs(a - b) > atol) & (jnp.abs(ia - ib) > rtol)).astype(jnp.int32)

  count = jnp.zeros(z.shape, jnp.int32)
  # (slice of the first pixel, slice of its neighbour) for the four directions.
  pairs = [
      ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
      ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
      ((slice(1, None), slice(1, None)), (slice(None, -1), slice(None, -1))),
      ((slice(1, None), slice(None, -1)), (slice(None, -1), slice(1, None))),
  ]
  for (ra, ca), (rb, cb) in pairs:
    d = disc(z[..., ra, ca], z[..., rb, cb], inv[..., ra, ca], inv[..., rb, cb])
    count = count.at[..., ra, ca].add(d)
    count = count.at[..., rb, cb].add(d)
  out = count < 3
  return out[..., None] if squeeze else out
