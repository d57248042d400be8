"""Camera trajectories for free-view rendering (reference 7).

Every trajectory is a list of orbit cameras (`cameras.orbit_camera`: radius 1,
looking at the world origin, up +y), as float32 arrays of yaw and pitch in
radians, then modelviews [F, 4, 4].
"""

from __future__ import annotations

import numpy as np
from jax import Array

from ivid_jax.geometry import cameras

TRAJECTORIES = ('swing', 'random', 'orbit')


def swing(frames: int = 60) -> tuple[np.ndarray, np.ndarray]:
  """The authors' video path: yaw = 0.6 cos t, pitch = 0.15 sin t, t in linspace(0, 2 pi, frames).

  The endpoint is included, so the first and last frames coincide, as in render.py.
  """
  t = np.linspace(0.0, 2.0 * np.pi, frames)
  return (0.6 * np.cos(t)).astype(np.float32), (0.15 * np.sin(t)).astype(np.float32)


def random(seed: int, count: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """The fusion metric's cameras: yaw = clip(0.3 N, +-0.6), pitch = clip(0.15 N, +-0.15).

  The authors draw one camera per scene from numpy's global RNG; here scene
  `seed` draws its own, so a scene's image does not depend on which scenes
  were rendered before it.
  """
  rng = np.random.default_rng(seed)
  yaw = np.clip(0.3 * rng.standard_normal(count), -0.6, 0.6)
  pitch = np.clip(0.15 * rng.standard_normal(count), -0.15, 0.15)
  return yaw.astype(np.float32), pitch.astype(np.float32)


def orbit(frames: int = 60, pitch: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """A full turn: yaw = 2 pi k / frames, k = 0 .. frames - 1, at a fixed pitch (radians)."""
  yaw = 2.0 * np.pi * np.arange(frames) / frames
  return yaw.astype(np.float32), np.full(frames, pitch, np.float32)


def make(name: str, frames: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(yaw, pitch) [F] of trajectory `name` (one of TRAJECTORIES); `random` gives one frame."""
  if name == 'swing':
    return swing(frames)
  if name == 'random':
    return random(seed)
  if name == 'orbit':
    return orbit(frames)
  raise ValueError(f'unknown trajectory {name!r}; expected one of {TRAJECTORIES}')


def modelviews(yaw: np.ndarray, pitch: np.ndarray) -> Array:
  """float32 [F, 4, 4] orbit cameras."""
  return cameras.orbit_camera(np.asarray(yaw, np.float32), np.asarray(pitch, np.float32))
