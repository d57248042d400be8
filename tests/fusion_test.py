"""Fusion free-view rendering: the authors' renderer on a 9-view chain (both kernels), a view's own camera, preview."""

import jax.numpy as jnp
import numpy as np
import pytest

from ivid_jax.geometry import depth as depth_lib
from ivid_jax.rendering import fusion

import cpu_kernel

_EMPTY = fusion.FUSION_NEAR  # the depth the renderer reads where nothing was drawn
# Four of the reference's 8 swing frames, spread over the path (yaw 0.6, -0.13, -0.54, 0.37;
# frame 7 repeats frame 0): half the time of all eight.
FRAMES = [0, 2, 4, 6]


def _psnr(a, b, where):
  mse = np.mean((np.asarray(a) - np.asarray(b))[where] ** 2)
  return 10 * np.log10(1.0 / max(mse, 1e-12))


@pytest.fixture(scope='module')
def scene(aggregate_ref):
  return (jnp.asarray(aggregate_ref['views']), jnp.asarray(aggregate_ref['modelviews']),
          jnp.asarray(aggregate_ref['render_modelviews'][FRAMES]))


# 'cpu', the rasteriser's CPU kernel, skips only where no compiler can build it (cpu_kernel.py).
_KERNELS = ('jnp', 'cpu')


@pytest.fixture(scope='module')
def exact(scene):
  """The default path's frames (the CPU kernel where it builds)."""
  views, mvs, targets = scene
  return [np.asarray(a) for a in fusion.render_scene(views, mvs, targets)]


@pytest.fixture(scope='module')
def exact_by_kernel(scene, exact):
  """kernel -> frames, rendered once each on first use."""
  views, mvs, targets = scene
  cache = {fusion.resolve_kernel('auto'): exact}

  def get(kernel):
    if kernel not in cache:
      cache[kernel] = [np.asarray(a) for a in fusion.render_scene(views, mvs, targets,
                                                                  kernel=kernel)]
    return cache[kernel]
  return get


@pytest.mark.parametrize('kernel', _KERNELS)
def test_exact_frames_match_the_authors_renderer(exact_by_kernel, aggregate_ref, kernel):
  if kernel == 'cpu':
    cpu_kernel.require()
  color, depth = exact_by_kernel(kernel)
  for f, ref in enumerate(FRAMES):
    ref_depth = aggregate_ref['render_depth'][ref][..., 0]
    both = (ref_depth > _EMPTY) & (depth[f][..., 0] > _EMPTY)
    # The issue asks for 28 dB; measured 54-60 dB (8-bit rounding of float weight sums).
    assert _psnr(color[f], aggregate_ref['render_color'][ref], both) >= 45.0, f
    np.testing.assert_array_equal(depth[f][..., 0] > _EMPTY, ref_depth > _EMPTY)
    np.testing.assert_allclose(depth[f][..., 0][both], ref_depth[both], rtol=1e-4)


def test_both_kernels_render_the_same_frames(exact_by_kernel):
  cpu_kernel.require()
  cpu, ref = exact_by_kernel('cpu'), exact_by_kernel('jnp')
  # Measured: depth within 2e-6; 8-bit colours at most 3 levels apart, 1.7% of the values
  # differ (weights that moved by a last bit near cos = 1; raster_kernel_test has the 640 px
  # samples).
  np.testing.assert_allclose(cpu[1], ref[1], rtol=1e-5)
  assert np.max(np.abs(cpu[0] - ref[0])) <= 4 / 255 + 1e-6
  assert np.mean(cpu[0] != ref[0]) < 0.03


def test_a_single_view_rendered_at_its_own_camera_is_that_view(scene):
  views, mvs, _ = scene
  # Same shapes as the parity test (valid switches views off): no new compilation.
  targets = jnp.broadcast_to(mvs[4], (len(FRAMES), 4, 4))
  color, depth = fusion.render_scene(views, mvs, targets, valid=jnp.arange(9) == 4)
  inner = (slice(2, -2), slice(2, -2))  # the border pixels' filters reach the black outside
  lin = np.asarray(depth_lib.linearize_depth(views[4, ..., 3], 0.6, 5.0))
  np.testing.assert_allclose(np.asarray(depth[0])[..., 0][inner], lin[inner], rtol=1e-5)
  # Every 5x5 block samples its own texel; the Lanczos filter then mixes neighbouring
  # texels near edges: measured 34.5 dB against the view.
  assert _psnr(color[0][inner], views[4, ..., :3][inner], np.s_[...]) >= 30.0


def test_preview_approximates_the_exact_renderer(scene, exact):
  views, mvs, targets = scene
  color, depth = (np.asarray(a) for a in fusion.render_scene(views, mvs, targets, mode='preview'))
  for f in range(len(FRAMES)):
    covered = depth[f][..., 0] > _EMPTY
    both = covered & (exact[1][f][..., 0] > _EMPTY)
    # Measured 37.6-43.9 dB where both cover; the preview has no skirts or sheets, so it
    # covers 63-96% of the pixels the exact renderer covers.
    assert _psnr(color[f], exact[0][f], both) >= 33.0, f
    assert both.sum() >= 0.6 * (exact[1][f][..., 0] > _EMPTY).sum(), f


def test_bad_inputs_are_named(scene):
  views, mvs, targets = scene
  with pytest.raises(ValueError, match='mode'):
    fusion.render_scene(views, mvs, targets, mode='fast')
  with pytest.raises(ValueError, match='modelviews'):
    fusion.render_scene(views, mvs[:3], targets)
