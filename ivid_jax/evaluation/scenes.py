"""Scenes as the 3D metrics see them: RGB, linear depth and cameras per view.

The files are the sampler's scene files (`ivid_jax.sampling.scene_io`, one
format, which also reads the authors' `scene_*.npz`); this module only checks
their arrays (`scene_io.SceneArrays`) for the metrics. A folder of scenes is
read in file-name order (`<DIR>/scenes/*.npz` when DIR is a sampler output
folder, else `<DIR>/*.npz`). Errors name the file and the problem.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np

from ivid_jax.sampling import scene_io

# The metrics' scene is the scene file's arrays (uint8 rgb, linear depth, modelview, fov,
# name): one type for one format, defined beside the format.
Scene = scene_io.SceneArrays
DEFAULT_FOV = scene_io.DEFAULT_FOV


def check_scene(scene: Scene, source: str = 'scene') -> Scene:
  """Validates shapes, dtypes and values; returns the scene with canonical dtypes."""
  rgb, depth, mv = np.asarray(scene.rgb), np.asarray(scene.depth), np.asarray(scene.modelview)
  if depth.ndim == 4 and depth.shape[-1] == 1:
    depth = depth[..., 0]
  if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.shape[1] != rgb.shape[2]:
    raise ValueError(f'{source}: rgb must be uint8 [V, S, S, 3], got {rgb.dtype} {rgb.shape}')
  v, s = rgb.shape[:2]
  if depth.shape != (v, s, s):
    raise ValueError(f'{source}: depth must be [{v}, {s}, {s}] to match rgb, got {depth.shape}')
  if mv.shape != (v, 4, 4):
    raise ValueError(f'{source}: modelview must be [{v}, 4, 4], got {mv.shape}')
  depth = depth.astype(np.float32)
  bad = ~np.isfinite(depth) | (depth <= 0)
  if bad.any():
    raise ValueError(f'{source}: depth has {int(bad.sum())} non-finite or non-positive value(s) '
                     '(linear depth D > 0 expected)')
  if not np.all(np.isfinite(mv)):
    raise ValueError(f'{source}: modelview has non-finite values')
  return scene._replace(rgb=rgb, depth=depth, modelview=mv.astype(np.float32),
                        fov=float(scene.fov), name=scene.name or source)


def write_scene(path: str | os.PathLike, scene: Scene, **extra: Any) -> str:
  """Writes a scene file (scene_io's format), atomically; extra fields (label, seed) ride along."""
  path = os.fspath(path)
  scene = check_scene(scene, path)
  return scene_io.write_arrays(path, scene._replace(meta={**scene.meta, **extra}))


def read_scene(path: str | os.PathLike) -> Scene:
  """One scene file, ours or the authors'; ValueError naming the file and the problem."""
  path = os.fspath(path)
  return check_scene(scene_io.read_arrays(path), path)


def scene_files(folder: str | os.PathLike) -> list[str]:
  """The `.npz` scene files of a sampler output folder (its `scenes/`) or of a scenes folder."""
  return scene_io.list_scenes(folder)


def read_scenes(folder: str | os.PathLike, limit: int | None = None) -> Iterator[Scene]:
  """The scenes of a folder, in file-name order (at most `limit`)."""
  for path in scene_files(folder)[:limit]:
    yield read_scene(path)
