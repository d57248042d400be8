"""Image-to-3D: a photo and its depth preprocessed as training data, as the chain's first view."""

import numpy as np
import pytest
from PIL import Image

from ivid_jax.data import errors
from ivid_jax.data import preprocess
from ivid_jax.sampling import photo


@pytest.fixture
def picture(tmp_path):
  rng = np.random.default_rng(0)
  image = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
  Image.fromarray(image).save(tmp_path / 'p.png')
  disparity = (1000 + 9000 * rng.random((15, 20))).astype(np.float16)
  np.savez(tmp_path / 'p.npz', disparity)
  return image, disparity, tmp_path


def test_first_view_is_the_training_preprocessing(picture):
  image, disparity, folder = picture
  view = photo.first_view(str(folder / 'p.png'), 16, depth_path=str(folder / 'p.npz'))
  want = preprocess.rgbd_example(image, disparity.astype(np.float32), 16)
  assert view.shape == (16, 16, 4) and view.dtype == np.float32
  np.testing.assert_array_equal(view[..., :3], want['rgb'] / np.float32(255.0))
  np.testing.assert_array_equal(view[..., 3:], want['depth'])


def test_depth_is_estimated_when_not_given(picture):
  _, _, folder = picture
  view = photo.first_view(str(folder / 'p.png'), 16, depth_model='tiny-random')
  # The estimate is stored scaled to the loader's peak (disparity 2, z = 0), then cropped.
  z = view[..., 3]
  assert 0.0 <= z.min() < z.max() < 1.0


def test_a_depth_map_of_another_shape_is_named(picture, tmp_path):
  _, _, folder = picture
  np.savez(tmp_path / 'tall.npz', np.ones((40, 10), np.float16))
  with pytest.raises(errors.BadExampleError, match='tall.npz'):
    photo.first_view(str(folder / 'p.png'), 16, depth_path=str(tmp_path / 'tall.npz'))
