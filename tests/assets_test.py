"""Bundled data and the errors bad input files get."""

import numpy as np
import pytest

from ivid_jax.data import assets


def test_bundled_demo_images_load():
  rgbd = assets.load_rgbd_npz('demo_rgbd.npz')
  assert rgbd.shape == (3, 128, 128, 4) and rgbd.dtype == np.float32
  assert 0.0 <= rgbd.min() and rgbd.max() <= 1.0


@pytest.mark.parametrize('arrays,message', [
    (dict(color=np.zeros((1, 8, 8, 3), np.uint8)), 'missing arrays'),
    (dict(color=np.zeros((1, 8, 8, 3), np.float32), zbuffer=np.zeros((1, 8, 8))), 'uint8'),
    (dict(color=np.zeros((1, 8, 8, 3), np.uint8), zbuffer=np.zeros((1, 8, 9))), 'zbuffer must be'),
    (dict(color=np.zeros((1, 8, 9, 3), np.uint8), zbuffer=np.zeros((1, 8, 9))), 'square'),
    (dict(color=np.zeros((1, 8, 8, 3), np.uint8), zbuffer=np.full((1, 8, 8), 2.0)), r'in \[0, 1\]'),
])
def test_bad_rgbd_files_name_the_file_and_the_problem(tmp_path, arrays, message):
  path = tmp_path / 'bad.npz'
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=message) as e:
    assets.load_rgbd_npz(str(path))
  assert str(path) in str(e.value)


def test_unreadable_and_missing_files(tmp_path):
  path = tmp_path / 'corrupt.npz'
  path.write_bytes(b'not a zip')
  with pytest.raises(ValueError, match='corrupt.npz'):
    assets.load_rgbd_npz(str(path))
  with pytest.raises(FileNotFoundError, match='nowhere.npz'):
    assets.load_rgbd_npz('nowhere.npz')
