"""Augmentations: deterministic per key, per-example keys, the reference's distributions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivid_jax.data import augment
from ivid_jax.geometry import image


@pytest.fixture
def batch():
  return jnp.asarray(np.random.default_rng(0).random((8, 16, 16, 4)), jnp.float32)


@pytest.mark.parametrize('fn', [augment.prewarp_noise, augment.postwarp_noise])
def test_noise_is_deterministic_per_key_and_bounded(fn, batch):
  key = jax.random.key(0)
  a, b = fn(key, batch), fn(key, batch)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, fn(jax.random.key(1), batch))
  # Each example draws its own sigma.
  sigmas = np.asarray(jnp.std(a - batch, axis=(1, 2, 3)))
  assert len(set(np.round(sigmas, 6))) == 8
  max_sigma = 0.005 if fn is augment.prewarp_noise else 0.03
  # sigma ~ U(0, max_sigma); each std is estimated from 1,024 values, to ~2% (measured largest
  # 0.97 max_sigma).
  assert sigmas.max() < 1.1 * max_sigma


def test_examples_do_not_depend_on_the_rest_of_the_batch(batch):
  key = jax.random.key(3)
  full = augment.prewarp_noise(key, batch)
  others = jnp.zeros_like(batch).at[5].set(batch[5])  # every other example changed
  np.testing.assert_array_equal(full[5], augment.prewarp_noise(key, others)[5])
  assert not np.array_equal(full[4], augment.prewarp_noise(key, others)[4])


def test_blur_replaces_rgb_by_the_blurred_clean_image_with_probability_0_8():
  clean = jnp.asarray(np.random.default_rng(1).random((1000, 8, 8, 3)), jnp.float32)
  cond = jnp.zeros_like(clean)
  out = np.asarray(augment.blur(jax.random.key(0), clean, cond))
  replaced = np.abs(out).sum((1, 2, 3)) > 0
  # 1,000 Bernoulli(0.8) draws: std 0.013, so +-0.04 is 3 sigma (measured 0.817).
  assert 0.76 < replaced.mean() < 0.84
  # A replaced image is a 3x3 Gaussian blur (sigma in (1e-3, 1 + 1e-3)) of the clean one.
  i = int(np.argmax(replaced))
  x = np.asarray(clean[i])
  best = min(np.abs(np.asarray(image.gaussian_blur(x, s)) - out[i]).max()
             for s in np.linspace(1e-3, 1.001, 2001))
  assert best < 1e-5  # measured 0.0: the drawn sigma lies on this grid's float32 blur


def test_gaussian_blur_matches_opencv_formula():
  x = np.random.default_rng(2).random((6, 7, 1)).astype(np.float32)
  sigma = 0.7
  k = np.exp(-np.arange(-1, 2) ** 2 / (2 * sigma ** 2))
  k /= k.sum()
  p = np.pad(x[..., 0], 1, mode='reflect')  # reflect-101, OpenCV's default border
  expected = sum(k[i] * k[j] * p[i:i + 6, j:j + 7] for i in range(3) for j in range(3))
  np.testing.assert_allclose(np.asarray(image.gaussian_blur(x, sigma))[..., 0], expected,
                             atol=1e-6)


def test_erode_rgb_uses_odd_boxes_from_one_to_nine():
  mask = jnp.ones((500, 21, 21, 1)).at[:, 10, 10].set(0.0)
  out = np.asarray(augment.erode_rgb(jax.random.key(0), mask))
  holes = (out == 0).sum((1, 2, 3))
  assert set(holes) == {1, 9, 25, 49, 81}
  counts = np.bincount(np.searchsorted([1, 9, 25, 49, 81], holes))
  assert counts.min() > 70  # uniform over the 5 radii (100 expected each)
  assert np.all(out <= np.asarray(mask))
