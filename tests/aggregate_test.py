"""Aggregated conditioning against the authors' conditions of a 9-view chain."""

import jax.numpy as jnp
import numpy as np
import pytest

from ivid_jax.geometry import raster_kernel
from ivid_jax.sampling import aggregate

import cpu_kernel


@pytest.fixture(scope='module', params=['jnp', 'cpu'])
def conditions(aggregate_ref, request):
  """Our condition of view j from views 0..j-1, j = 1..8: one compiled fixed stack of 9.

  Both paths: jnp (what accelerators run) and the default on CPUs (the rasteriser's CPU
  kernel; skipped only where no compiler can build it, tests/cpu_kernel.py).
  """
  if request.param == 'cpu':
    cpu_kernel.require()
  views = jnp.asarray(aggregate_ref['views'])
  mvs = jnp.asarray(aggregate_ref['modelviews'])
  kernel = raster_kernel.resolve(request.param)
  return [aggregate.aggregate_condition(views, mvs, jnp.arange(9) < j, mvs[j], kernel=kernel)
          for j in range(1, 9)]


def _iou(a, b):
  a, b = a > 0.5, b > 0.5
  return (a & b).sum() / max((a | b).sum(), 1)


def test_masks_colours_and_depths_match_the_authors(conditions, aggregate_ref):
  for j, c in enumerate(conditions):
    ref = {k: aggregate_ref[f'cond_{k}'][j] for k in ('color', 'depth', 'mask', 'mask_rgb',
                                                      'depth_convex')}
    # Measured: IoU 1.0 for both masks in all 8 views; the threshold leaves room for a few
    # pixels whose 7-of-9 count or depth-edge test sits exactly on a float boundary.
    assert _iou(np.asarray(c.mask), ref['mask']) >= 0.999, j
    assert _iou(np.asarray(c.mask_rgb), ref['mask_rgb']) >= 0.999, j
    both = (np.asarray(c.mask_rgb) > 0.5) & (ref['mask_rgb'] > 0.5)
    mse = np.mean((np.asarray(c.color) - ref['color'])[both[..., 0]] ** 2)
    # Measured 60-93 dB: 8-bit colours differ by one level in a few pixels where float
    # sums of the weights round differently.
    assert 10 * np.log10(1.0 / max(mse, 1e-12)) >= 50.0, j
    depth_both = (np.asarray(c.mask) > 0.5) & (ref['mask'] > 0.5)
    # z-buffer values; measured <= 1e-4 (float32 disparity means against GL's depth buffer).
    np.testing.assert_allclose(np.asarray(c.depth)[depth_both], ref['depth'][depth_both],
                               atol=1e-3)
    np.testing.assert_allclose(np.asarray(c.depth_convex), ref['depth_convex'], atol=2e-3)


def test_masks_nest_and_holes_are_zero(conditions):
  for c in conditions:
    mask, mask_rgb = np.asarray(c.mask), np.asarray(c.mask_rgb)
    assert set(np.unique(mask)) <= {0.0, 1.0} and np.all(mask_rgb <= mask)
    assert np.all(np.asarray(c.color)[mask_rgb[..., 0] == 0] == 0)
    assert np.all(np.asarray(c.depth)[mask[..., 0] == 0] == 0)
    inputs = c.model_inputs()
    assert inputs['y'].shape == (128, 128, 4) and float(inputs['y'].min()) >= -1.0


@pytest.mark.parametrize('kernel', ['jnp', 'cpu'])
def test_invalid_views_are_ignored_whatever_they_hold(aggregate_ref, kernel):
  if kernel == 'cpu':
    cpu_kernel.require()
  views = np.array(aggregate_ref['views'])
  mvs = jnp.asarray(aggregate_ref['modelviews'])
  kernel = raster_kernel.resolve(kernel)
  clean = aggregate.aggregate_condition(jnp.asarray(views), mvs, jnp.arange(9) < 3, mvs[3],
                                        kernel=kernel)
  views[3:] = np.random.default_rng(0).random(views[3:].shape)  # garbage in unused slots
  c = aggregate.aggregate_condition(jnp.asarray(views), mvs, jnp.arange(9) < 3, mvs[3],
                                    kernel=kernel)
  for got, want in zip(c, clean):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
