"""Image helpers against the libraries the authors called (PIL, OpenCV semantics)."""

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ivid_jax.geometry import image


@pytest.mark.parametrize('size,out', [(384, 128), (100, 64), (33, 11)])
def test_lanczos_resize_matches_pil(size, out):
  x = np.random.default_rng(size).integers(0, 256, (size, size, 3)).astype(np.uint8)
  ref = np.asarray(Image.fromarray(x).resize((out, out), Image.LANCZOS)).astype(np.float32)
  got = np.asarray(image.resize_lanczos_uint8(jnp.asarray(x, jnp.float32), out))
  # PIL accumulates in fixed point: rare off-by-one levels, never more.
  assert np.abs(ref - got).max() <= 1.0
  assert (ref != got).mean() < 1e-3


def test_erode_matches_a_min_filter_with_an_infinite_border():
  m = np.random.default_rng(0).random((20, 20)) > 0.1
  for size in (1, 3, 5):
    expected = ndimage.minimum_filter(m, size=size, mode='constant', cval=True)
    np.testing.assert_array_equal(image.erode(jnp.asarray(m), size), expected)


def test_pack_rgb8_round_trip():
  v = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.float32)
  np.testing.assert_array_equal(image.unpack_rgb8(image.pack_rgb8(v)), v)


def test_block_helpers():
  x = np.arange(36, dtype=np.float32).reshape(1, 6, 6, 1)
  np.testing.assert_array_equal(image.block_center(x, 3)[0, ..., 0], [[7, 10], [25, 28]])
  m = np.zeros((6, 6), bool)
  m[:3, :2] = True
  np.testing.assert_array_equal(image.block_count(m, 3), [[6, 0], [0, 0]])


def test_downsample_color_8bit_truncates_then_resamples_like_pil():
  x = np.random.default_rng(3).random((48, 48, 3)).astype(np.float32) * 1.1 - 0.05
  u8 = (np.clip(x, 0, 1) * 255).astype(np.uint8)
  ref = np.asarray(Image.fromarray(u8).resize((16, 16), Image.LANCZOS)) / 255.0
  got = np.asarray(image.downsample_color_8bit(jnp.asarray(x), 16))
  # Measured: every value equal to float32 rounding (largest difference 7e-8).
  np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_downsample_color_8bit_of_packed_words_equals_that_of_the_colours():
  x = np.random.default_rng(3).uniform(-0.1, 1.1, (2, 48, 48, 3)).astype(np.float32)
  packed = image.pack_rgb8(image.to_uint8_values(jnp.asarray(x)))
  np.testing.assert_array_equal(image.downsample_color_8bit(packed, 16),
                                image.downsample_color_8bit(jnp.asarray(x), 16))
