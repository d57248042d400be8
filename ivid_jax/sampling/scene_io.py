"""Scene files and the authors' output layout (reference 6.6).

Under an output folder:
  scenes/scene_<suffix>.npz   every view of a scene: colour, depth, camera, class, seed
  grids/rgb_<suffix>.png      the views (3 x 9 in the authors' order for '3x9')
  grids/depth_<suffix>.png    their depth, colourised with inferno (near is bright)
  conds/rgb_cond_<suffix>.png, conds/depth_cond_<suffix>.png   the aggregated conditions
  results/rgb_<suffix>.png    single images for the metrics ('uncond': view 0, 'random':
                              the novel view; the fusion renderer adds its own)
  videos/                     written by `ivid-jax render`
with <suffix> = class<c:03d>_seed<s:05d> (seed<s:05d> without classes).

A scene file is a plain, pickle-free .npz: color uint8 [V, N, N, 3] (8-bit,
as the authors store PNGs), depth float32 [V, N, N] linear depth lifted with
the sampler's near/far (what their file stores), modelview float32 [V, 4, 4],
yaw, pitch [V], fov, near, far, seed, class (-1: none), viewset, display
(the grid order). `read_scene` also reads the authors' own scene files (a
pickled list of dicts with PNG bytes and PyGLM matrices) without PyGLM and
without unpickling anything but their numpy arrays, dicts and matrices.
Every file is written to a temporary name and renamed, so an interrupted run
leaves no partial file.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import zipfile
import types
from typing import Any, Iterable, Mapping, NamedTuple

import numpy as np
from PIL import Image

from ivid_jax import atomic
from ivid_jax import images
from ivid_jax.geometry import depth as depth_lib

SUBFOLDERS = ('scenes', 'grids', 'conds', 'results', 'videos')


def suffix(seed: int, label: int | None) -> str:
  """The authors' file suffix: class<c:03d>_seed<s:05d>, or seed<s:05d> without classes."""
  parts = [] if label is None or label < 0 else [f'class{int(label):03d}']
  return '_'.join(parts + [f'seed{int(seed):05d}'])


def make_dirs(out: str) -> dict[str, str]:
  """Creates the output layout; returns {subfolder: path}."""
  paths = {name: os.path.join(out, name) for name in SUBFOLDERS}
  for path in paths.values():
    os.makedirs(path, exist_ok=True)
  return paths


def write_png(path: str, image: np.ndarray) -> str:
  """float [H, W, 3] in [0, 1] (clipped, truncated as the authors' PNGs) or uint8 -> PNG."""
  image = images.to_uint8(image, 'truncate')
  return atomic.write_atomic(path, lambda f: Image.fromarray(image).save(f, format='PNG'))


DEFAULT_FOV = 45.0  # degrees; the authors' sampler's, and what files without a fov mean


class SceneArrays(NamedTuple):
  """A scene as its file stores it: the one type for the format, whoever reads or writes it.

  The 3D metrics, the ground-truth scenes and `read_scene` use it as it is; a
  sampler's `Scene` becomes one with `Scene.to_arrays` (8-bit colour, linear depth).

  Attributes:
    rgb: uint8 [V, N, N, 3].
    depth: float32 [V, N, N] linear depth D along the optical axis.
    modelview: float32 [V, 4, 4] world-to-camera (OpenGL axes).
    fov: degrees.
    name: where it came from (the file's name), for reports; not stored.
    meta: the other stored fields (near, far, yaw, pitch, seed, label, viewset, display, and
      whatever else a writer adds), as numpy values.
  """
  rgb: np.ndarray
  depth: np.ndarray
  modelview: np.ndarray
  fov: float = DEFAULT_FOV
  name: str = ''
  meta: Mapping[str, Any] = types.MappingProxyType({})


@dataclasses.dataclass
class Scene:
  """One generated scene as the sampler holds it: float views before the file's 8 bits.

  Attributes:
    views: float32 [V, N, N, 4]: colour in [0, 1] and z-buffer depth (near/far).
    modelviews: float32 [V, 4, 4].
    yaw, pitch: float32 [V] radians (NaN when unknown, e.g. the authors' files).
    fov, near, far: the cameras' fov (degrees) and the depth encoding.
    seed: int (-1 unknown); label: class (-1 none); viewset: name; display: grid rows.
  """
  views: np.ndarray
  modelviews: np.ndarray
  yaw: np.ndarray
  pitch: np.ndarray
  fov: float = DEFAULT_FOV
  near: float = depth_lib.SAMPLE_NEAR
  far: float = depth_lib.SAMPLE_FAR
  seed: int = -1
  label: int = -1
  viewset: str = 'custom'
  display: tuple[tuple[int, ...], ...] = ()

  @property
  def num_views(self) -> int:
    return self.views.shape[0]

  def linear_depth(self) -> np.ndarray:
    """float32 [V, N, N] linear depth D."""
    return np.asarray(depth_lib.linearize_depth(self.views[..., 3], self.near, self.far))

  def to_arrays(self, name: str = '') -> SceneArrays:
    """The scene as its file stores it: colour truncated to 8 bits, linear depth."""
    display = self.display or (tuple(range(self.num_views)),)
    table = np.full((len(display), max(len(r) for r in display)), -1, np.int32)
    for i, row in enumerate(display):
      table[i, :len(row)] = row
    meta = dict(yaw=np.asarray(self.yaw, np.float32), pitch=np.asarray(self.pitch, np.float32),
                near=np.float32(self.near), far=np.float32(self.far), seed=np.int64(self.seed),
                label=np.int64(self.label), viewset=np.str_(self.viewset), display=table)
    return SceneArrays(images.to_uint8(self.views[..., :3], 'truncate'),
                       self.linear_depth().astype(np.float32),
                       np.asarray(self.modelviews, np.float32), float(self.fov), name, meta)


def write_arrays(path: str | os.PathLike, scene: SceneArrays) -> str:
  """Writes a scene file (module docstring) atomically; `meta` is stored beside the arrays."""
  arrays = dict(color=scene.rgb, depth=scene.depth, modelview=scene.modelview,
                fov=np.float32(scene.fov), **{k: np.asarray(v) for k, v in scene.meta.items()})
  return atomic.write_atomic(path, lambda f: np.savez_compressed(f, **arrays))


def write_scene(path: str, scene: Scene) -> str:
  """Writes a sampler's scene as a scene file (module docstring), atomically."""
  return write_arrays(path, scene.to_arrays())


def read_arrays(path: str | os.PathLike) -> SceneArrays:
  """The arrays of one of our scene files or one of the authors', unconverted.

  Raises:
    FileNotFoundError, or ValueError naming the file and what is wrong with it.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such scene file')
  try:
    with np.load(path, allow_pickle=False) as f:
      keys = set(f.keys())
      if keys == {'data'}:
        raise _AuthorsFormat()
      missing = {'color', 'depth', 'modelview'} - keys
      if missing:
        raise ValueError(f'{path}: not a scene file (missing {sorted(missing)}; it holds '
                         f'{sorted(keys)})')
      data = {k: f[k] for k in keys}
  except _AuthorsFormat:
    return _read_authors_arrays(path)
  except (OSError, zipfile.BadZipFile, EOFError) as e:
    raise ValueError(f'{path}: not a readable scene file ({type(e).__name__}: {e})') from None
  color, depth, mv = data.pop('color'), data.pop('depth'), data.pop('modelview')
  if depth.ndim == 4 and depth.shape[-1] == 1:
    depth = depth[..., 0]
  v = color.shape[0]
  if (color.dtype != np.uint8 or color.ndim != 4 or depth.shape != color.shape[:3]
      or mv.shape != (v, 4, 4)):
    raise ValueError(f'{path}: inconsistent scene arrays: color {color.dtype} {color.shape}, '
                     f'depth {depth.shape}, modelview {mv.shape} (uint8 [V, N, N, 3], '
                     '[V, N, N], [V, 4, 4] expected)')
  fov = float(data.pop('fov', DEFAULT_FOV))
  return SceneArrays(color, depth.astype(np.float32), mv.astype(np.float32), fov,
                     os.path.basename(path), data)


def read_scene(path: str, near: float = depth_lib.SAMPLE_NEAR,
               far: float = depth_lib.SAMPLE_FAR) -> Scene:
  """Reads one of our scene files or one of the authors' as a `Scene` (z-buffer views).

  Raises:
    FileNotFoundError, or ValueError naming the file and what is wrong with it.
  """
  arrays = read_arrays(path)
  data = arrays.meta
  v = arrays.rgb.shape[0]
  near = float(data.get('near', near))
  far = float(data.get('far', far))
  z = np.asarray(depth_lib.project_depth(arrays.depth, near, far))
  views = np.concatenate([arrays.rgb.astype(np.float32) / 255.0, z[..., None]], -1)
  display = tuple(tuple(int(k) for k in row if k >= 0) for row in data.get(
      'display', np.arange(v)[None]))
  nan = np.full(v, np.nan, np.float32)
  return Scene(views=views, modelviews=arrays.modelview, yaw=data.get('yaw', nan),
               pitch=data.get('pitch', nan), fov=arrays.fov, near=near, far=far,
               seed=int(data.get('seed', -1)), label=int(data.get('label', -1)),
               viewset=str(data.get('viewset', 'custom')), display=display)


class _AuthorsFormat(Exception):
  """Raised inside read_arrays' np.load block to leave it and read the file as the authors'."""


class _GlmMatrix:
  """Stands in for PyGLM's mat4x4 while unpickling: its state is the four columns."""

  def __setstate__(self, state):
    self.matrix = np.asarray(state, np.float64).T  # columns -> row-major matrix


class _AuthorsUnpickler(pickle.Unpickler):
  """Unpickles the authors' scene list: numpy arrays, dicts and PyGLM matrices only."""

  _ALLOWED = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
              ('numpy', 'ndarray'), ('numpy', 'dtype'), ('numpy.core.multiarray', 'scalar'),
              ('numpy._core.multiarray', 'scalar')}

  def find_class(self, module, name):
    if module == 'glm' and name in ('mat4x4', 'mat4'):
      return _GlmMatrix
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f'refusing to unpickle {module}.{name}')


def _read_authors_arrays(path: str) -> SceneArrays:
  try:
    with zipfile.ZipFile(path) as z, z.open('data.npy') as f:
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                     np.lib.format.read_array_header_2_0)
      _, _, dtype = read_header(f)
      if dtype != object:
        raise ValueError('data is not an object array')
      entries = list(_AuthorsUnpickler(f).load())
    if not entries:
      raise ValueError('it holds no views')
    colors, depths, mvs = [], [], []
    for entry in entries:
      color = np.asarray(Image.open(io.BytesIO(entry['color'])).convert('RGB'))
      n = color.shape[0]
      packed = np.asarray(Image.open(io.BytesIO(entry['depth'])), np.uint8)
      depths.append(np.frombuffer(packed.tobytes(), np.float32).reshape(n, n))
      colors.append(color)
      mv = entry['modelview']
      mvs.append(mv.matrix if isinstance(mv, _GlmMatrix) else np.asarray(mv, np.float64))
    fovs = sorted({float(e.get('fov', DEFAULT_FOV)) for e in entries})
    if len(fovs) != 1:
      raise ValueError(f'views have different fields of view {fovs}')
  except (OSError, KeyError, TypeError, ValueError, pickle.UnpicklingError,
          zipfile.BadZipFile) as e:
    raise ValueError(f"{path}: not a readable scene file of the authors' format "
                     f'({type(e).__name__}: {e})') from None
  return SceneArrays(np.stack(colors), np.stack(depths), np.stack(mvs).astype(np.float32),
                     fovs[0], os.path.basename(path), {'display': np.arange(len(entries))[None]})


def list_scenes(scene_dir: str | os.PathLike) -> list[str]:
  """Sorted .npz scene files of an output folder (its scenes/ subfolder) or of a scenes folder.

  Raises:
    FileNotFoundError for a missing folder, ValueError for one without scene files.
  """
  scene_dir = os.fspath(scene_dir)
  if not os.path.isdir(scene_dir):
    raise FileNotFoundError(f'{scene_dir}: no such folder (scenes)')
  folder = os.path.join(scene_dir, 'scenes')
  if not os.path.isdir(folder):
    folder = scene_dir
  files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                 if f.endswith('.npz') and not f.startswith('.'))
  if not files:
    raise ValueError(f'{folder}: no .npz scene files')
  return files


def write_outputs(paths: dict[str, str], scene: Scene, conditions=None) -> list[str]:
  """Everything the authors' sampler writes for one scene (reference 6.6), plus the scene file.

  Args:
    paths: from `make_dirs`.
    scene: the scene.
    conditions: optional aggregate.Condition of numpy [V - 1, N, N, C].

  Returns:
    The files written.
  """
  sfx = suffix(scene.seed, scene.label)
  rgb = scene.views[..., :3]
  out = [write_scene(os.path.join(paths['scenes'], f'scene_{sfx}.npz'), scene)]
  if scene.viewset == 'uncond' or scene.num_views == 1:
    out.append(write_png(os.path.join(paths['results'], f'rgb_{sfx}.png'), rgb[0]))
    return out
  if scene.viewset == 'random':
    out.append(write_png(os.path.join(paths['grids'], f'rgb_{sfx}.png'),
                         images.grid(rgb, [[0, 1]])))
    out.append(write_png(os.path.join(paths['conds'], f'rgb_{sfx}.png'), rgb[0]))
    out.append(write_png(os.path.join(paths['results'], f'rgb_{sfx}.png'), rgb[1]))
    return out
  rows = scene.display or (tuple(range(scene.num_views)),)
  out.append(write_png(os.path.join(paths['grids'], f'rgb_{sfx}.png'), images.grid(rgb, rows)))
  out.append(write_png(os.path.join(paths['grids'], f'depth_{sfx}.png'),
                       images.grid(images.colorize_depth(scene.views[..., 3]), rows)))
  if conditions is not None:
    # View 0 has no condition: a blank tile, as the authors insert.
    shift = lambda a: np.concatenate([np.zeros_like(a[:1]), a])
    cond_rgb = shift(np.asarray(conditions.color))
    cond_z = shift(np.asarray(conditions.depth))[..., 0]
    # Holes are z = 0 after masking; show them black rather than as the nearest depth.
    cond_depth = images.colorize_depth(cond_z) * shift(np.asarray(conditions.mask))
    blank = [[k if k > 0 else -1 for k in row] for row in rows]
    out.append(write_png(os.path.join(paths['conds'], f'rgb_cond_{sfx}.png'),
                         images.grid(cond_rgb, blank)))
    out.append(write_png(os.path.join(paths['conds'], f'depth_cond_{sfx}.png'),
                         images.grid(cond_depth, blank)))
  return out


def scenes_from_batch(batch, settings) -> Iterable[tuple[Scene, object]]:
  """(Scene, its conditions) for each scene of a sampler.SceneBatch."""
  import jax  # pylint: disable=g-import-not-at-top
  for b in range(len(batch.seeds)):
    label = -1 if batch.classes is None else int(batch.classes[b])
    scene = Scene(views=batch.views[b], modelviews=batch.modelviews[b],
                  yaw=batch.viewset.yaw[b], pitch=batch.viewset.pitch[b], fov=settings.fov,
                  near=settings.near, far=settings.far, seed=int(batch.seeds[b]), label=label,
                  viewset=batch.viewset.name, display=batch.viewset.display)
    yield scene, jax.tree.map(lambda a: a[b], batch.conditions)
