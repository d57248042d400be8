"""Cameras: OpenGL look-at and perspective matrices, and the method's orbit camera.

Conventions (stated once for the whole package):
- World and camera frames are right-handed with OpenGL axes: the camera looks
  down -z, +y is up, +x is right.
- A `modelview` is a float32 [..., 4, 4] world-to-camera matrix in ordinary
  row-major layout (translation in the last column), identical to
  `glm.lookAt`'s matrix read row by row.
- Field of view is vertical (= horizontal; images are square) and in degrees.
- Angles of the orbit camera (yaw, pitch) are in radians. View 0 sits at
  eye (0, 0, 1) looking at the world origin, which therefore lies on its
  optical axis at depth 1 (reference section 2.1).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


def _normalize(v: Array) -> Array:
  return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def look_at(eye: ArrayLike, target: ArrayLike, up: ArrayLike = (0.0, 1.0, 0.0)) -> Array:
  """World-to-camera matrix of a camera at `eye` looking at `target`.

  Identical to right-handed `glm.lookAt(eye, target, up)`.

  Args:
    eye: float [..., 3] camera centre in world coordinates.
    target: float [..., 3] point the camera looks at.
    up: float [..., 3] approximate up direction.

  Returns:
    float32 [..., 4, 4] modelview (world-to-camera) matrix.
  """
  eye = jnp.asarray(eye, jnp.float32)
  target = jnp.asarray(target, jnp.float32)
  up = jnp.asarray(up, jnp.float32)
  eye, target, up = jnp.broadcast_arrays(eye, target, up)
  f = _normalize(target - eye)
  s = _normalize(jnp.cross(f, up))
  u = jnp.cross(s, f)
  rot = jnp.stack([s, u, -f], axis=-2)  # [..., 3, 3] rows are camera axes
  trans = -jnp.einsum('...ij,...j->...i', rot, eye)
  top = jnp.concatenate([rot, trans[..., None]], axis=-1)
  bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], jnp.float32), top.shape[:-2] + (1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def perspective(fov_deg: float, near: float, far: float, aspect: float = 1.0) -> Array:
  """OpenGL projection matrix, NDC z in [-1, 1] (right-handed `glm.perspective`).

  Args:
    fov_deg: vertical field of view in degrees.
    near, far: clip planes, positive distances along -z.
    aspect: width / height.

  Returns:
    float32 [4, 4] projection matrix; clip w equals the camera-space depth.
  """
  t = jnp.tan(jnp.deg2rad(jnp.asarray(fov_deg, jnp.float32)) / 2)
  n, f = float(near), float(far)
  zero = jnp.zeros((), jnp.float32)
  return jnp.array([
      [1.0 / (aspect * t), zero, zero, zero],
      [zero, 1.0 / t, zero, zero],
      [zero, zero, -(f + n) / (f - n), -2.0 * f * n / (f - n)],
      [zero, zero, -1.0, zero],
  ], jnp.float32)


def focal_normalized(fov_deg: float) -> float:
  """Focal length in units of the image width: 0.5 / tan(fov / 2) (1.20711 at 45 deg)."""
  return 0.5 / math.tan(math.radians(fov_deg) / 2)


def orbit_eye(yaw: ArrayLike, pitch: ArrayLike, radius: ArrayLike = 1.0) -> Array:
  """Eye position on the method's orbit: r (cos p sin y, sin p, cos p cos y).

  Positive yaw moves the camera to +x (right), positive pitch moves it up.

  Args:
    yaw, pitch: float [...] radians.
    radius: float [...] distance from the world origin.

  Returns:
    float32 [..., 3].
  """
  yaw, pitch, radius = (jnp.asarray(a, jnp.float32) for a in (yaw, pitch, radius))
  yaw, pitch, radius = jnp.broadcast_arrays(yaw, pitch, radius)
  return radius[..., None] * jnp.stack([
      jnp.cos(pitch) * jnp.sin(yaw),
      jnp.sin(pitch),
      jnp.cos(pitch) * jnp.cos(yaw),
  ], axis=-1)


def orbit_camera(yaw: ArrayLike, pitch: ArrayLike, radius: ArrayLike = 1.0,
                 target: ArrayLike = (0.0, 0.0, 0.0)) -> Array:
  """Modelview of the orbit camera at (yaw, pitch, radius) looking at `target`, up +y.

  `orbit_camera(0, 0)` is view 0: a translation by (0, 0, -1).

  Returns:
    float32 [..., 4, 4].
  """
  eye = orbit_eye(yaw, pitch, radius)
  target = jnp.broadcast_to(jnp.asarray(target, jnp.float32), eye.shape)
  return look_at(eye, target, jnp.broadcast_to(jnp.array([0.0, 1.0, 0.0], jnp.float32), eye.shape))


def view0() -> Array:
  """The reference camera: eye (0, 0, 1) looking at the origin. float32 [4, 4]."""
  return look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0))


def invert_rigid(modelview: ArrayLike) -> Array:
  """Inverse of a rigid world-to-camera matrix (camera-to-world). float32 [..., 4, 4]."""
  m = jnp.asarray(modelview, jnp.float32)
  rot_t = jnp.swapaxes(m[..., :3, :3], -1, -2)
  trans = -jnp.einsum('...ij,...j->...i', rot_t, m[..., :3, 3])
  top = jnp.concatenate([rot_t, trans[..., None]], axis=-1)
  bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], jnp.float32), top.shape[:-2] + (1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def camera_center(modelview: ArrayLike) -> Array:
  """World position of the camera centre of a rigid modelview. float32 [..., 3]."""
  return invert_rigid(modelview)[..., :3, 3]


# The random second camera V1 of a training pair (reference 2.2, 10.2 item 10): standard
# deviations of yaw and pitch (radians), of the radius around 1, and of the look-at target's
# jitter on each axis. Inference uses other cameras (reference 6.1).
TRAINING_CAMERA_STD = {'yaw_std': 0.15, 'pitch_std': 0.15, 'radius_std': 0.1, 'target_std': 0.05}


def training_camera_params(normals: ArrayLike, *, yaw_std: float = 0.15, pitch_std: float = 0.15,
                           radius_std: float = 0.1, target_std: float = 0.05) -> dict:
  """The training camera distribution, from standard normal draws (numpy or jax alike).

  yaw, pitch ~ N(0, std^2) radians, radius = 1 + N(0, radius_std^2), and the
  look-at target jittered by N(0, target_std^2) on each axis. The host loader
  (numpy generators) and `random_training_camera` (jax keys) both map their
  draws through this, so the distribution is defined once.

  Args:
    normals: float [..., 6] standard normal draws (yaw, pitch, radius, target xyz).

  Returns:
    {'yaw', 'pitch', 'radius': [...], 'target': [..., 3]}, the input's array type.
  """
  return {'yaw': yaw_std * normals[..., 0], 'pitch': pitch_std * normals[..., 1],
          'radius': 1.0 + radius_std * normals[..., 2], 'target': target_std * normals[..., 3:6]}


def random_training_camera(key: Array, shape: tuple[int, ...] = (),
                           **stds: float) -> Array:
  """Modelviews of random training cameras V1 (`training_camera_params`).

  Args:
    key: PRNG key.
    shape: batch shape of the cameras.
    **stds: overrides of TRAINING_CAMERA_STD.

  Returns:
    float32 [*shape, 4, 4] modelviews.
  """
  p = training_camera_params(jax.random.normal(key, tuple(shape) + (6,)),
                             **{**TRAINING_CAMERA_STD, **stds})
  return orbit_camera(p['yaw'], p['pitch'], p['radius'], p['target'])
