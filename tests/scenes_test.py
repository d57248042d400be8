"""Scene files: the ivid-jax format round trip, the authors' format without PyGLM, clear errors."""

import copyreg
import io
import os
import sys
import types

import numpy as np
import pytest
from PIL import Image

from ivid_jax.evaluation import scenes as scenes_lib
from ivid_jax.geometry import cameras


def _scene(views=3, size=8, seed=0):
  rng = np.random.RandomState(seed)
  yaw = np.linspace(-0.3, 0.3, views)
  return scenes_lib.Scene(
      rgb=rng.randint(0, 256, (views, size, size, 3)).astype(np.uint8),
      depth=rng.uniform(0.6, 5.0, (views, size, size)).astype(np.float32),
      modelview=np.asarray(cameras.orbit_camera(yaw, 0.1 * yaw)), fov=45.0)


def _png(array, mode=None):
  buffer = io.BytesIO()
  Image.fromarray(array, mode).save(buffer, format='PNG')
  return buffer.getvalue()


def test_ivid_jax_format_round_trips_in_a_sampler_folder(tmp_path):
  scene = _scene()
  scenes_lib.write_scene(tmp_path / 'scenes' / 'scene_class001_seed00002.npz', scene,
                         label=1, seed=2)
  scenes_lib.write_scene(tmp_path / 'scenes' / 'scene_class001_seed00001.npz', _scene(seed=1))
  read = list(scenes_lib.read_scenes(tmp_path))  # the output folder: its scenes/ is read
  assert [s.name for s in read] == ['scene_class001_seed00001.npz', 'scene_class001_seed00002.npz']
  for k in ('rgb', 'depth', 'modelview'):
    np.testing.assert_array_equal(getattr(read[1], k), getattr(scene, k))
  assert read[1].fov == 45.0
  assert not [f for f in os.listdir(tmp_path / 'scenes') if 'partial' in f]


def test_authors_scene_file_reads_without_pyglm(tmp_path, monkeypatch):
  # The authors' save_scene (reference 6.6): a pickled list of dicts whose modelview is a
  # PyGLM mat4, which pickles as its class plus the tuple of its columns.
  glm = types.ModuleType('glm')

  class Mat4:
    def __init__(self, m):
      self.columns = tuple(tuple(float(v) for v in m[:, c]) for c in range(4))

    def __reduce_ex__(self, protocol):
      return copyreg.__newobj__, (type(self),), self.columns

  Mat4.__module__, Mat4.__qualname__, Mat4.__name__ = 'glm', 'mat4x4', 'mat4x4'
  glm.mat4x4 = Mat4
  monkeypatch.setitem(sys.modules, 'glm', glm)
  scene = _scene(views=2, size=6)
  data = [{'color': _png(scene.rgb[k]),
           'depth': _png(np.frombuffer(scene.depth[k].tobytes(), np.uint8).reshape(6, 6, 4),
                         'RGBA'),
           'fov': 45, 'modelview': Mat4(scene.modelview[k])} for k in range(2)]
  path = tmp_path / 'scene_class000_seed00000.npz'
  np.savez_compressed(path, data=np.array(data, dtype=object))
  monkeypatch.delitem(sys.modules, 'glm')  # the reader must not need it
  read = scenes_lib.read_scene(path)
  np.testing.assert_array_equal(read.rgb, scene.rgb)
  np.testing.assert_array_equal(read.depth, scene.depth)  # float32 bytes through RGBA PNG
  np.testing.assert_array_equal(read.modelview, scene.modelview)
  assert read.fov == 45.0


def test_scene_files_cannot_run_code(tmp_path):
  class Evil:
    def __reduce__(self):
      return os.system, ('echo pwned',)

  path = tmp_path / 'evil.npz'
  np.savez(path, data=np.array([{'color': Evil()}], dtype=object))
  with pytest.raises(ValueError, match=r'evil.npz.*refusing to unpickle (posix|os)\.system'):
    scenes_lib.read_scene(path)


def test_bad_scenes_are_named(tmp_path):
  bad_depth = _scene()._replace(depth=np.zeros((3, 8, 8), np.float32))
  path = tmp_path / 'zero_depth.npz'
  np.savez(path, rgb=bad_depth.rgb, depth=bad_depth.depth, modelview=bad_depth.modelview)
  with pytest.raises(ValueError, match='zero_depth.npz: depth has 192 non-finite or non-positive'):
    scenes_lib.read_scene(path)
  np.savez(tmp_path / 'other.npz', images=np.zeros(3))
  with pytest.raises(ValueError, match=r"other.npz: neither .* it holds \['images'\]"):
    scenes_lib.read_scene(tmp_path / 'other.npz')
  with pytest.raises(ValueError, match=r'modelview must be \[3, 4, 4\]'):
    scenes_lib.write_scene(tmp_path / 'x.npz', _scene()._replace(modelview=np.eye(4)))
  with pytest.raises(FileNotFoundError, match='missing_folder'):
    scenes_lib.scene_files(tmp_path / 'missing_folder')
