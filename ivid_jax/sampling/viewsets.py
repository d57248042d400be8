"""View sets: the cameras of a scene, in generation order, and how to show them (reference 6.2).

Every camera is on the unit orbit around the world origin, looking at it with
+y up (`cameras.orbit_camera`); view 0 is generated first (by the
unconditional model, or given: image-to-3D) and each further view is
conditioned on all earlier ones, so the order matters.

- `uncond`: view 0 only.
- `random`: view 0 and one novel view, yaw ~ N(0, 0.3^2), pitch ~ N(0, 0.15^2)
  radians, not clipped (the evaluation protocol). Each scene draws its own
  pose from its own key (the authors' sampler shares one pose per batch).
- `3x9`: the authors' 27 views, yaw-major in their order, shown as their
  3 x 9 grid.
- `orbit` / `orbit:N`: a full 360 degree turn in N views (default 8), in
  order of increasing yaw, at pitch 0. Beyond the authors.
- a list of (yaw, pitch) pairs, in radians, in generation order:
  `"0,0;0.3,0;-0.3,0"` on the command line.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import numpy as np

RANDOM_YAW_STD, RANDOM_PITCH_STD = 0.3, 0.15
# The authors' 3x9 set: yaws 0, +-0.15 .. +-0.6 and pitches 0, +-0.15, yaw-major.
_3X9_YAWS = (0.0, 0.15, -0.15, 0.30, -0.30, 0.45, -0.45, 0.60, -0.60)
_3X9_PITCHES = (0.0, 0.15, -0.15)
# Their display grid (`reorder`): rows pitch -0.15, 0, +0.15 as stored; yaw +0.6 .. -0.6.
_3X9_DISPLAY = ((23, 17, 11, 5, 2, 8, 14, 20, 26),
                (21, 15, 9, 3, 0, 6, 12, 18, 24),
                (22, 16, 10, 4, 1, 7, 13, 19, 25))
DEFAULT_ORBIT_VIEWS = 8
NAMES = ('uncond', 'random', '3x9', 'orbit')


class ViewSet(NamedTuple):
  """The cameras of a batch of scenes.

  Attributes:
    name: the view set's name ('custom' for a list of pairs).
    yaw, pitch: float32 [B, V] radians, generation order.
    display: rows of view indices for grids (3 x 9 for '3x9', else one row).
  """
  name: str
  yaw: np.ndarray
  pitch: np.ndarray
  display: tuple[tuple[int, ...], ...]

  @property
  def num_views(self) -> int:
    return self.yaw.shape[1]


def parse(spec: str) -> tuple[str, list[tuple[float, float]] | int | None]:
  """'3x9' / 'orbit:12' / '0,0;0.3,0' -> (name, pairs or orbit size or None); errors name the spec."""
  spec = spec.strip()
  if spec in ('uncond', 'random', '3x9'):
    return spec, None
  if spec == 'orbit' or spec.startswith('orbit:'):
    count = DEFAULT_ORBIT_VIEWS
    if ':' in spec:
      try:
        count = int(spec.split(':', 1)[1])
      except ValueError:
        count = 0
    if count < 2:
      raise ValueError(f'viewset {spec!r}: orbit needs at least 2 views, e.g. orbit:8')
    return 'orbit', count
  pairs = []
  for item in spec.split(';'):
    parts = item.split(',')
    try:
      if len(parts) != 2:
        raise ValueError
      pairs.append((float(parts[0]), float(parts[1])))
    except ValueError:
      raise ValueError(f'viewset {spec!r}: expected one of {NAMES}, orbit:N, or yaw,pitch pairs in '
                       'radians separated by ";" (e.g. "0,0;0.3,0;-0.3,0")') from None
  return 'custom', pairs


def make(spec: str | Sequence[tuple[float, float]], keys: jax.Array | None = None,
         num_scenes: int | None = None) -> ViewSet:
  """The view set for a batch of scenes.

  Args:
    spec: a name (NAMES), 'orbit:N', a 'yaw,pitch;...' string or a list of (yaw, pitch).
    keys: PRNG keys [B] of the scenes; needed by 'random' (each scene draws its
      pose from `fold_in(key, POSE_STREAM)`), else only their number is used.
    num_scenes: B when no keys are given.

  Returns:
    ViewSet with yaw, pitch [B, V].
  """
  if keys is not None:
    num_scenes = keys.shape[0]
  if num_scenes is None:
    raise ValueError('viewsets.make needs the scene keys or num_scenes')
  if isinstance(spec, str):
    name, arg = parse(spec)
  else:
    name, arg = 'custom', [tuple(map(float, p)) for p in spec]
  display = None
  if name == 'uncond':
    yaw = pitch = np.zeros((1,), np.float32)
  elif name == '3x9':
    yaw = np.repeat(np.asarray(_3X9_YAWS, np.float32), len(_3X9_PITCHES))
    pitch = np.tile(np.asarray(_3X9_PITCHES, np.float32), len(_3X9_YAWS))
    display = _3X9_DISPLAY
  elif name == 'orbit':
    yaw = (2.0 * np.pi * np.arange(arg) / arg).astype(np.float32)
    pitch = np.zeros((arg,), np.float32)
  elif name == 'custom':
    if not arg:
      raise ValueError('a custom viewset needs at least one (yaw, pitch) pair')
    yaw = np.asarray([p[0] for p in arg], np.float32)
    pitch = np.asarray([p[1] for p in arg], np.float32)
  else:  # random
    if keys is None:
      raise ValueError("the 'random' viewset draws each scene's pose from its key: pass keys")
    pose = np.asarray(jax.vmap(random_pose)(keys))
    yaw = np.stack([np.zeros(num_scenes, np.float32), pose[:, 0]], 1)
    pitch = np.stack([np.zeros(num_scenes, np.float32), pose[:, 1]], 1)
    return ViewSet(name, yaw, pitch, ((0, 1),))
  num_views = yaw.shape[0]
  display = display or (tuple(range(num_views)),)
  tile = lambda a: np.broadcast_to(a[None], (num_scenes, num_views)).copy()
  return ViewSet(name, tile(yaw), tile(pitch), display)


# Stream of a scene key that its random pose comes from (view keys fold in 0 .. V - 1).
POSE_STREAM = 2 ** 31 - 1


def random_pose(key: jax.Array) -> jax.Array:
  """(yaw, pitch) float32 [2] of the 'random' view set for one scene key."""
  k = jax.random.fold_in(key, POSE_STREAM)
  z = jax.random.normal(k, (2,))
  return z * np.asarray([RANDOM_YAW_STD, RANDOM_PITCH_STD], np.float32)
