"""View sets: the authors' 3x9 order and grid, per-scene random poses, orbits, custom lists."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivid_jax.sampling import viewsets


def _keys(*seeds):
  return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


def test_3x9_is_yaw_major_in_the_authors_order_with_their_display_grid():
  vs = viewsets.make('3x9', num_scenes=2)
  assert vs.yaw.shape == (2, 27)
  pairs = list(zip(vs.yaw[0].round(2), vs.pitch[0].round(2)))
  assert pairs[:7] == [(0, 0), (0, 0.15), (0, -0.15), (0.15, 0), (0.15, 0.15), (0.15, -0.15),
                       (-0.15, 0)]
  assert pairs[-1] == (-0.6, -0.15)
  display = np.asarray(vs.display)
  assert sorted(display.reshape(-1)) == list(range(27))
  # Reference 6.2: rows are pitch -0.15, 0, +0.15 as the authors store them, yaw +0.6 -> -0.6.
  np.testing.assert_allclose(vs.pitch[0][display[0]], -0.15, atol=1e-6)
  np.testing.assert_allclose(vs.pitch[0][display[2]], 0.15, atol=1e-6)
  np.testing.assert_allclose(vs.yaw[0][display[1]], np.linspace(0.6, -0.6, 9), atol=1e-6)


def test_random_poses_are_per_scene_and_functions_of_the_scene_key():
  a = viewsets.make('random', _keys(0, 1, 2, 3))
  b = viewsets.make('random', _keys(2, 7))
  assert a.yaw.shape == (4, 2) and np.all(a.yaw[:, 0] == 0) and np.all(a.pitch[:, 0] == 0)
  assert len(set(a.yaw[:, 1].tolist())) == 4  # not one pose per batch (the authors' bug)
  np.testing.assert_array_equal(a.yaw[2], b.yaw[0])
  np.testing.assert_array_equal(a.pitch[2], b.pitch[0])
  many = viewsets.make('random', _keys(*range(2000)))
  # yaw ~ N(0, 0.3^2), pitch ~ N(0, 0.15^2): 2000 draws give the std within ~5%.
  assert np.std(many.yaw[:, 1]) == pytest.approx(0.3, rel=0.06)
  assert np.std(many.pitch[:, 1]) == pytest.approx(0.15, rel=0.06)


def test_orbit_custom_and_uncond():
  orbit = viewsets.make('orbit:6', num_scenes=1)
  np.testing.assert_allclose(orbit.yaw[0], np.arange(6) * np.pi / 3, rtol=1e-6)
  assert viewsets.make('orbit', num_scenes=1).num_views == viewsets.DEFAULT_ORBIT_VIEWS
  custom = viewsets.make('0,0; 0.3,0.1;-0.3,0', num_scenes=3)
  np.testing.assert_allclose(custom.yaw[2], [0, 0.3, -0.3], rtol=1e-6)
  np.testing.assert_allclose(custom.pitch[1], [0, 0.1, 0], rtol=1e-6)
  assert viewsets.make([(0.0, 0.0), (0.5, 0.0)], num_scenes=1).num_views == 2
  assert viewsets.make('uncond', num_scenes=1).num_views == 1


@pytest.mark.parametrize('spec', ['4x4', 'orbit:1', '0,0;0.3', 'orbit:x'])
def test_bad_view_sets_are_named(spec):
  with pytest.raises(ValueError, match='viewset'):
    viewsets.make(spec, num_scenes=1)
