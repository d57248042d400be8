"""Scene files (ours and the authors'), the output layout, grids and the depth colour map."""

import copyreg
import io
import os
import sys
import types

import numpy as np
import pytest
from PIL import Image

from ivid_jax import images
from ivid_jax.geometry import cameras
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.sampling import aggregate
from ivid_jax.sampling import scene_io


def _scene(num_views=27, n=8, seed=3, label=2, viewset='3x9', display=None):
  rng = np.random.default_rng(seed)
  color = rng.integers(0, 256, (num_views, n, n, 3)) / 255.0
  z = rng.uniform(0.05, 0.95, (num_views, n, n, 1))
  yaw = np.linspace(-0.6, 0.6, num_views).astype(np.float32)
  pitch = np.zeros(num_views, np.float32)
  return scene_io.Scene(views=np.concatenate([color, z], -1).astype(np.float32),
                        modelviews=np.asarray(cameras.orbit_camera(yaw, pitch)), yaw=yaw,
                        pitch=pitch, seed=seed, label=label, viewset=viewset,
                        display=display or (tuple(range(num_views)),))


def test_scene_files_round_trip(tmp_path):
  scene = _scene(display=((2, 0, 1), (5, 4, 3)), num_views=6)
  path = scene_io.write_scene(str(tmp_path / 'scene_x.npz'), scene)
  back = scene_io.read_scene(path)
  np.testing.assert_array_equal(back.views[..., :3], scene.views[..., :3])  # 8-bit colours
  # Depth is stored linear (float32) and re-encoded: float32 round-off only.
  np.testing.assert_allclose(back.views[..., 3], scene.views[..., 3], atol=1e-5)
  np.testing.assert_array_equal(back.modelviews, scene.modelviews)
  assert (back.seed, back.label, back.viewset, back.display) == (3, 2, '3x9', ((2, 0, 1), (5, 4, 3)))
  assert os.listdir(tmp_path) == ['scene_x.npz']  # no temporary file left behind
  assert os.stat(path).st_mode & 0o044  # readable by others, not mkstemp's 0600


class _FakeMat4x4:
  """Pickles like PyGLM's mat4x4: NEWOBJ of glm.mat4x4, then its four columns as state."""

  def __init__(self, matrix):
    self.columns = tuple(tuple(float(v) for v in col) for col in np.asarray(matrix).T)

  def __reduce_ex__(self, protocol):
    return copyreg.__newobj__, (type(self),), self.columns


def test_the_authors_scene_files_are_read_without_pyglm(tmp_path, monkeypatch):
  scene = _scene(num_views=3)
  lin = scene.linear_depth()
  glm = types.ModuleType('glm')
  _FakeMat4x4.__module__, _FakeMat4x4.__qualname__ = 'glm', 'mat4x4'
  glm.mat4x4 = _FakeMat4x4
  monkeypatch.setitem(sys.modules, 'glm', glm)
  data = []
  for i in range(3):  # as the authors' save_scene builds each entry
    png = io.BytesIO()
    Image.fromarray(images.to_uint8(scene.views[i, ..., :3], 'truncate')).save(png, format='PNG')
    packed = np.frombuffer(lin[i][..., None].astype(np.float32).tobytes(), np.uint8)
    depth_png = io.BytesIO()
    Image.fromarray(packed.reshape(8, 8, 4)).save(depth_png, format='PNG')
    data.append({'color': png.getvalue(), 'depth': depth_png.getvalue(), 'fov': 45,
                 'modelview': _FakeMat4x4(scene.modelviews[i])})
  np.savez_compressed(tmp_path / 'scene_a.npz', data=np.asarray(data, dtype=object))
  monkeypatch.delitem(sys.modules, 'glm')  # reading must not need it
  back = scene_io.read_scene(str(tmp_path / 'scene_a.npz'))
  np.testing.assert_allclose(back.modelviews, scene.modelviews, atol=1e-7)
  np.testing.assert_array_equal(back.views[..., :3], scene.views[..., :3])
  np.testing.assert_allclose(back.views[..., 3], scene.views[..., 3], atol=1e-5)


def test_foreign_pickles_are_refused(tmp_path):
  np.savez(tmp_path / 'scene_evil.npz', data=np.asarray([{'color': os.getcwd}], dtype=object))
  with pytest.raises(ValueError, match='refusing to unpickle'):
    scene_io.read_scene(str(tmp_path / 'scene_evil.npz'))
  np.savez(tmp_path / 'scene_bad.npz', color=np.zeros(3))
  with pytest.raises(ValueError, match='scene_bad.npz: not a scene file'):
    scene_io.read_scene(str(tmp_path / 'scene_bad.npz'))
  with pytest.raises(FileNotFoundError, match='nope.npz'):
    scene_io.read_scene(str(tmp_path / 'nope.npz'))


def test_3x9_outputs_follow_the_authors_layout(tmp_path):
  from ivid_jax.sampling import viewsets  # pylint: disable=g-import-not-at-top
  scene = _scene(display=viewsets.make('3x9', num_scenes=1).display)
  zeros = np.zeros((26, 8, 8, 1), np.float32)
  conds = aggregate.Condition(np.full((26, 8, 8, 3), 0.5, np.float32), zeros, zeros + 1, zeros,
                              zeros)
  paths = scene_io.make_dirs(str(tmp_path))
  written = scene_io.write_outputs(paths, scene, conds)
  names = sorted(os.path.relpath(p, tmp_path) for p in written)
  assert names == ['conds/depth_cond_class002_seed00003.png', 'conds/rgb_cond_class002_seed00003.png',
                   'grids/depth_class002_seed00003.png', 'grids/rgb_class002_seed00003.png',
                   'scenes/scene_class002_seed00003.npz']
  grid = np.asarray(Image.open(tmp_path / 'grids/rgb_class002_seed00003.png'))
  assert grid.shape == (2 + 3 * 10, 2 + 9 * 10, 3)  # 8 px tiles, 2 px apart
  # Row 2, column 5 of the authors' grid is view 0 (yaw 0, pitch 0).
  np.testing.assert_array_equal(grid[12:20, 42:50],
                                images.to_uint8(scene.views[0, ..., :3], 'truncate'))
  cond = np.asarray(Image.open(tmp_path / 'conds/rgb_cond_class002_seed00003.png'))
  assert cond[12:20, 42:50].max() == 0 and cond[2:10, 2:10].min() == 127  # view 0: blank


def test_random_and_uncond_outputs_go_to_results(tmp_path):
  paths = scene_io.make_dirs(str(tmp_path))
  scene_io.write_outputs(paths, _scene(num_views=2, viewset='random', label=-1))
  result = np.asarray(Image.open(tmp_path / 'results/rgb_seed00003.png'))
  np.testing.assert_array_equal(
      result, images.to_uint8(_scene(num_views=2).views[1, ..., :3], 'truncate'))
  scene_io.write_outputs(paths, _scene(num_views=1, viewset='uncond', seed=4))
  assert os.path.exists(tmp_path / 'results/rgb_class002_seed00004.png')
  assert scene_io.list_scenes(str(tmp_path))[0].endswith('scene_class002_seed00004.npz')


def test_linear_depth_uses_the_scene_near_far():
  scene = _scene(num_views=1)
  np.testing.assert_allclose(scene.linear_depth(), depth_lib.linearize_depth(
      scene.views[..., 3], 0.6, 5.0), rtol=1e-6)
