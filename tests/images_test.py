"""Tests for ivid_jax/images.py: the 8-bit rule, the depth colour map, the grid layout."""

import numpy as np
import pytest

from ivid_jax import images


def test_to_uint8_truncates_or_rounds_as_asked_and_clips():
  x = np.array([-0.5, 0.0, 100.6 / 255, 100.4 / 255, 254.9 / 255, 1.0, 2.0], np.float32)
  np.testing.assert_array_equal(images.to_uint8(x, 'truncate'), [0, 0, 100, 100, 254, 255, 255])
  np.testing.assert_array_equal(images.to_uint8(x, 'nearest'), [0, 0, 101, 100, 255, 255, 255])


def test_to_uint8_keeps_uint8_and_refuses_an_unknown_rule():
  x = np.array([0, 7, 255], np.uint8)
  np.testing.assert_array_equal(images.to_uint8(x, 'truncate'), x)
  with pytest.raises(ValueError, match='rounding'):
    images.to_uint8(np.zeros(2), 'up')


def test_inferno_matches_matplotlib_and_near_is_bright():
  # matplotlib's _inferno_data entries 0, 51, 128 and 255; the polynomial fit is within
  # 8/255 of the table (its largest error, in blue near t = 0.2).
  table = {0: (0.001462, 0.000466, 0.013866), 51: (0.258234, 0.038571, 0.406485),
           128: (0.735683, 0.215906, 0.330245), 255: (0.988362, 0.998364, 0.644924)}
  for i, rgb in table.items():
    np.testing.assert_allclose(images.inferno(i / 255), rgb, atol=8.5 / 255)
  near, far = images.colorize_depth(np.array([0.0, 1.0]))
  assert near.sum() > 2.0 and far.sum() < 0.05


def test_grid_places_tiles_with_the_authors_border_or_only_between():
  tiles = np.arange(1, 4, dtype=np.float32)[:, None, None, None] * np.ones((3, 2, 3, 1))
  out = images.grid(tiles, [[0, -1], [2]], fill=9.0)  # 2 px around and between, black lines
  assert out.shape == (2 + 2 * (2 + 2), 2 + 2 * (3 + 2), 1)
  np.testing.assert_array_equal(out[2:4, 2:5, 0], 1)
  np.testing.assert_array_equal(out[2:4, 7:10, 0], 9)  # the blank tile
  np.testing.assert_array_equal(out[6:8, 2:5, 0], 3)
  np.testing.assert_array_equal(out[6:8, 7:10, 0], 0)  # a short row leaves background
  assert out[:2].sum() == 0 and out[:, 5:7].sum() == 0
  inner = images.grid(tiles, [[0, 1, 2]], border=False, padding=1, background=5.0)
  np.testing.assert_array_equal(inner[..., 0], [[1, 1, 1, 5, 2, 2, 2, 5, 3, 3, 3]] * 2)
