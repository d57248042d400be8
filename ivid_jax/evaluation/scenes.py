"""Multi-view scenes on disk for the 3D metrics: the reader behind `eval-3d --scenes`, and a writer.

A scene is what the 3D metrics need and nothing more: per view an RGB image,
its linear depth and its camera (`Scene`). One scene per `.npz` file; a
folder of scenes is read in file-name order (`<DIR>/scenes/*.npz` when DIR is
a sampler output folder, else `<DIR>/*.npz`).

Formats read:
- ivid-jax (`write_scene`): arrays `rgb` uint8 [V, S, S, 3], `depth` float32
  [V, S, S] (or [V, S, S, 1]) linear depth D along the optical axis,
  `modelview` float32 [V, 4, 4] world-to-camera (OpenGL axes), optional `fov`
  (degrees, default 45); other arrays (class, seed, ...) are ignored.
- the authors' `scene_*.npz` (reference 6.6): `data`, a pickled list with one
  dict per view: `color` PNG bytes (uint8 RGB), `depth` PNG bytes of the
  float32 linear depth reinterpreted as uint8 [S, S, 4], `fov`, `modelview`
  (a PyGLM mat4, column-major). They are unpickled by a restricted unpickler
  that admits only numpy arrays and glm matrices (read as numpy, so PyGLM is
  not needed and no code in the file runs).
Errors name the file and the problem.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from typing import Any, Iterator, NamedTuple

import numpy as np
from PIL import Image

DEFAULT_FOV = 45.0


class Scene(NamedTuple):
  """Views of one scene.

  Attributes:
    rgb: uint8 [V, S, S, 3].
    depth: float32 [V, S, S] linear depth D > 0.
    modelview: float32 [V, 4, 4] world-to-camera, OpenGL axes.
    fov: field of view, degrees.
    name: where it came from (the file), for reports.
  """
  rgb: np.ndarray
  depth: np.ndarray
  modelview: np.ndarray
  fov: float = DEFAULT_FOV
  name: str = ''


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
  """Writes a scene in the ivid-jax format, atomically; extra arrays (class, seed) ride along."""
  path = os.fspath(path)
  scene = check_scene(scene, path)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  tmp = f'{path}.partial.npz'
  np.savez_compressed(tmp, rgb=scene.rgb, depth=scene.depth, modelview=scene.modelview,
                      fov=np.float32(scene.fov), **{k: np.asarray(v) for k, v in extra.items()})
  os.replace(tmp, path)
  return path


class _GlmMatrix:
  """Stands in for a pickled PyGLM matrix; `array()` gives the row-major numpy matrix."""

  def __init__(self, *args):
    self.state = args

  def __setstate__(self, state):
    self.state = state

  def array(self) -> np.ndarray:
    values = np.asarray(self.state, np.float64)
    if values.size != 16:
      raise ValueError(f'a glm matrix with {values.size} values, not a mat4')
    # PyGLM stores (and pickles) columns: state[c][r] is row r of column c.
    return values.reshape(4, 4).T


class _SceneUnpickler(pickle.Unpickler):
  """Admits the numpy reconstructors, plain containers and glm matrices; nothing else."""

  _NUMPY = {('numpy', 'ndarray'), ('numpy', 'dtype'), ('numpy.core.multiarray', '_reconstruct'),
            ('numpy._core.multiarray', '_reconstruct'), ('numpy.core.multiarray', 'scalar'),
            ('numpy._core.multiarray', 'scalar'), ('copyreg', '_reconstructor'),
            ('builtins', 'object')}

  def find_class(self, module, name):
    if module == 'glm' and name.lstrip('d').startswith('mat'):
      return _GlmMatrix
    if (module, name) in self._NUMPY:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f'refusing to unpickle {module}.{name}')


def _read_object_array(path: str, member: str) -> Any:
  """The object array `member` of an .npz, unpickled by _SceneUnpickler."""
  with zipfile.ZipFile(path) as zf, zf.open(f'{member}.npy') as f:
    version = np.lib.format.read_magic(f)
    header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
              else np.lib.format.read_array_header_2_0)
    _, _, dtype = header(f)
    if dtype != object:
      raise ValueError(f'{member} is {dtype}, not a pickled list')
    return _SceneUnpickler(f).load()


def _decode_png(data: bytes, what: str) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    image.load()
    return np.asarray(image)


def _authors_scene(path: str) -> Scene:
  views = _read_object_array(path, 'data')
  if isinstance(views, np.ndarray):
    views = list(views.reshape(-1))
  if not views:
    raise ValueError('holds no views')
  rgb, depth, modelview, fovs = [], [], [], []
  for k, view in enumerate(views):
    try:
      color = _decode_png(view['color'], 'color')[..., :3]
      packed = _decode_png(view['depth'], 'depth')
      if packed.dtype != np.uint8 or packed.ndim != 3 or packed.shape[-1] != 4:
        raise ValueError(f'depth PNG is {packed.dtype} {packed.shape}, not RGBA bytes of float32')
      depth.append(np.ascontiguousarray(packed).view(np.float32)[..., 0])
      mv = view['modelview']
      modelview.append(mv.array() if isinstance(mv, _GlmMatrix) else np.asarray(mv, np.float64))
      fovs.append(float(view.get('fov', DEFAULT_FOV)))
      rgb.append(color)
    except (KeyError, TypeError, OSError, ValueError) as e:
      raise ValueError(f'view {k}: {type(e).__name__}: {e}') from None
  if len(set(fovs)) != 1:
    raise ValueError(f'views have different fields of view {sorted(set(fovs))}')
  return Scene(np.stack(rgb), np.stack(depth), np.stack(modelview), fovs[0])


def read_scene(path: str | os.PathLike) -> Scene:
  """One scene file in either format (module docstring); ValueError naming the file."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such scene file')
  try:
    with np.load(path, allow_pickle=False) as data:
      keys = set(data.files)
      if {'rgb', 'depth', 'modelview'} <= keys:
        fov = float(data['fov']) if 'fov' in keys else DEFAULT_FOV
        scene = Scene(data['rgb'], data['depth'], data['modelview'], fov)
      elif 'data' in keys:
        scene = None
      else:
        raise ValueError(f'neither the ivid-jax arrays (rgb, depth, modelview) nor the authors\' '
                         f'`data` list; it holds {sorted(keys)}')
    if scene is None:
      scene = _authors_scene(path)
  except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError) as e:
    raise ValueError(f'{path}: not a readable scene file ({type(e).__name__}: {e})') from None
  except ValueError as e:
    if str(e).startswith(path):
      raise
    raise ValueError(f'{path}: {e}') from None
  return check_scene(scene._replace(name=os.path.basename(path)), path)


def scene_files(folder: str | os.PathLike) -> list[str]:
  """The `.npz` scene files of a sampler output folder (its `scenes/`) or of a scenes folder."""
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'{folder}: no such folder (scenes)')
  inner = os.path.join(folder, 'scenes')
  root = inner if os.path.isdir(inner) else folder
  files = sorted(os.path.join(root, f) for f in os.listdir(root)
                 if f.endswith('.npz') and not f.endswith('.partial.npz'))
  if not files:
    raise ValueError(f'{root}: no .npz scene files')
  return files


def read_scenes(folder: str | os.PathLike, limit: int | None = None) -> Iterator[Scene]:
  """The scenes of a folder, in file-name order (at most `limit`)."""
  for path in scene_files(folder)[:limit]:
    yield read_scene(path)
