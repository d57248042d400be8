"""The authors' RGBD preprocessing (reference 1.2, 1.4) and the bad-input readers."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from ivid_jax.data import errors
from ivid_jax.data import preprocess


def test_scale_disparity_caps_the_nearest_point_at_half_a_unit():
  raw = np.array([[6250.0, 62500.0], [1.0, 3125.0]], np.float32)  # 1, 10, 1.6e-4, 0.5 after /6250
  d = preprocess.scale_disparity(raw)
  # max 10 > 1/near = 2: everything divided by max * near = 5; then floored at 1e-3
  np.testing.assert_allclose(d, [[0.2, 2.0], [1e-3, 0.1]], rtol=1e-6)
  small = preprocess.scale_disparity(np.array([[6250.0, 3125.0]]))  # max 1 < 2: unscaled
  np.testing.assert_allclose(small, [[1.0, 0.5]])


def test_z_buffer_mode_is_the_affine_map_of_disparity():
  d = np.array([2.0, 1.0, 0.01, 1e-3], np.float32)
  z = preprocess.depth_channel(d, 'z_buffer')
  np.testing.assert_allclose(z, np.clip((2.0 - d) / 1.99, 0, 1), atol=1e-6)
  assert z[0] == 0.0 and z[-1] == 1.0
  np.testing.assert_allclose(preprocess.depth_channel(d, 'to_depth'), 1 / d, rtol=1e-6)
  mm = preprocess.depth_channel(d, 'disparity_minmax')
  assert mm.min() == 0.0 and mm.max() == 1.0
  with pytest.raises(ValueError, match='unknown depth preprocessing mode'):
    preprocess.depth_channel(d, 'zbuffer')


@pytest.mark.parametrize('hw,expected', [((100, 150), (64, 96)), ((150, 100), (96, 64)),
                                         ((300, 301), (64, 64)), ((97, 211), (64, 139))])
def test_resize_shorter_side_like_torchvision(hw, expected):
  assert preprocess.resized_shape(*hw, 64) == expected


def test_center_crop_offsets_round_half_to_even():
  x = np.arange(7 * 10).reshape(7, 10)
  crop = preprocess.center_crop(x, 4)
  # top = round(1.5) = 2, left = round(3.0) = 3
  np.testing.assert_array_equal(crop, x[2:6, 3:7])


def test_rgb_and_depth_resize_match_pil_directly():
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (60, 90, 3), np.uint8)
  rgb = preprocess.resize_crop_rgb(img, 32)
  ref = np.asarray(Image.fromarray(img).resize((48, 32), Image.Resampling.LANCZOS))[:, 8:40]
  np.testing.assert_array_equal(rgb, ref)
  gray = preprocess.resize_crop_rgb(img[..., 0], 32)
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
  rgba = np.concatenate([img, np.full((60, 90, 1), 7, np.uint8)], -1)
  np.testing.assert_array_equal(preprocess.resize_crop_rgb(rgba, 32), rgb)
  depth = rng.random((30, 45)).astype(np.float32)
  dz = preprocess.resize_crop_depth(depth, 32)
  # nearest: every output value is an input value
  assert dz.shape == (32, 32) and np.isin(dz, depth).all()


def test_rgbd_example_and_model_input_ranges():
  rng = np.random.default_rng(1)
  img = rng.integers(0, 256, (40, 40, 3), np.uint8)
  disp = (rng.random((20, 20)) * 20000 + 100).astype(np.float16)
  ex = preprocess.rgbd_example(img, disp, 16)
  assert ex['rgb'].dtype == np.uint8 and ex['rgb'].shape == (16, 16, 3)
  assert ex['depth'].dtype == np.float32 and ex['depth'].shape == (16, 16, 1)
  x0 = preprocess.to_model_input(ex['rgb'], ex['depth'])
  assert x0.shape == (16, 16, 4) and x0.min() >= -1 and x0.max() <= 1
  np.testing.assert_allclose(x0[..., :3], ex['rgb'] / 127.5 - 1, atol=1e-6)
  # depth is point-sampled from the full-resolution channel, whose nearest point sits at z = 0
  full = preprocess.depth_channel(preprocess.scale_disparity(disp))
  assert full.min() == 0.0 and np.isin(ex['depth'], full).all()


def _write(path, data):
  with open(path, 'wb') as f:
    f.write(data)


def test_readers_name_the_file_and_the_problem(tmp_path):
  buf = io.BytesIO()
  Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 90).save(buf, 'JPEG')
  good = buf.getvalue()
  _write(tmp_path / 'ok.jpg', good)
  assert preprocess.read_image(tmp_path / 'ok.jpg').shape == (32, 32, 3)
  cases = {
      'corrupt.jpg': (b'not an image at all', 'cannot decode image'),
      'truncated.jpg': (good[:len(good) // 2], 'cannot decode image'),
  }
  for name, (data, problem) in cases.items():
    _write(tmp_path / name, data)
    with pytest.raises(errors.BadExampleError, match=problem) as e:
      preprocess.read_image(tmp_path / name)
    assert str(tmp_path / name) in str(e.value)
  with pytest.raises(errors.BadExampleError, match='image file is missing'):
    preprocess.read_image(tmp_path / 'none.jpg')

  np.savez(tmp_path / 'ok.npz', np.ones((8, 8), np.float16))
  assert preprocess.read_depth_npz(tmp_path / 'ok.npz').dtype == np.float32
  bad = np.ones((8, 8), np.float16)
  bad[1, 2], bad[3, 3] = np.nan, np.inf
  np.savez(tmp_path / 'nan.npz', bad)
  with pytest.raises(errors.BadExampleError, match='2 NaN/inf') as e:
    preprocess.read_depth_npz(tmp_path / 'nan.npz')
  assert os.fspath(tmp_path / 'nan.npz') in str(e.value)
  with pytest.raises(errors.BadExampleError, match='depth file is missing'):
    preprocess.read_depth_npz(tmp_path / 'gone.npz')
  _write(tmp_path / 'junk.npz', b'PK\x03\x04 truncated zip')
  with pytest.raises(errors.BadExampleError, match='cannot read depth'):
    preprocess.read_depth_npz(tmp_path / 'junk.npz')
  np.savez(tmp_path / 'cube.npz', np.ones((2, 8, 8), np.float16))
  with pytest.raises(errors.BadExampleError, match='must be 2-D'):
    preprocess.read_depth_npz(tmp_path / 'cube.npz')
  preprocess.check_depth_matches((16, 24), (32, 48), 'd.npz')  # same aspect: fine
  with pytest.raises(errors.BadExampleError, match='aspect ratios differ'):
    preprocess.check_depth_matches((16, 16), (32, 48), 'd.npz')


def test_skip_log_counts_and_reports():
  log = errors.SkipLog()
  assert log.report() == 'no bad examples'
  log.add(errors.BadExampleError('a.jpg', 'cannot decode image'))
  log.add(errors.BadExampleError('b.npz', 'depth file is missing'))
  assert len(log) == 2
  assert log.report().splitlines() == ['skipped 2 bad example(s):',
                                       '  a.jpg: cannot decode image',
                                       '  b.npz: depth file is missing']


def test_folder_builder_and_estimate_depth_share_one_image_extension_list():
  from ivid_jax.data import estimate_depth  # pylint: disable=g-import-not-at-top
  from ivid_jax.data import rgbd_folder  # pylint: disable=g-import-not-at-top
  assert rgbd_folder.IMAGE_EXTENSIONS is estimate_depth.IMAGE_EXTENSIONS is preprocess.IMAGE_EXTENSIONS
  assert preprocess.is_image_file('a/B.WEBP') and not preprocess.is_image_file('a/b.npz')


def test_synset_of_imagenet_train_names():
  assert preprocess.synset_of('n01440764_10026.JPEG') == 'n01440764'
  assert preprocess.synset_of('train/n01440764_10026') == 'n01440764'
  assert preprocess.synset_of('ILSVRC2012_val_00000001.JPEG') is None
  assert preprocess.synset_of('n0144076_1.JPEG') is None  # seven digits: not a synset
