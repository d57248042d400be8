"""Render trajectories: the authors' swing, the metric's random cameras, full orbits."""

import numpy as np

from ivid_jax.geometry import cameras
from ivid_jax.rendering import trajectories


def test_swing_is_the_authors_path_with_the_endpoint():
  yaw, pitch = trajectories.swing(60)
  t = np.linspace(0, 2 * np.pi, 60)
  np.testing.assert_allclose(yaw, 0.6 * np.cos(t), atol=1e-6)
  np.testing.assert_allclose(pitch, 0.15 * np.sin(t), atol=1e-6)
  assert yaw[0] == yaw[-1]


def test_random_cameras_are_clipped_and_seeded():
  yaw, pitch = zip(*(trajectories.random(s) for s in range(500)))
  yaw, pitch = np.concatenate(yaw), np.concatenate(pitch)
  assert np.abs(yaw).max() <= 0.6 and np.abs(pitch).max() <= 0.15
  assert np.mean(np.abs(yaw) == 0.6) > 0.02  # the clip is reached (|N| > 2: ~4.6%)
  np.testing.assert_array_equal(trajectories.random(7)[0], trajectories.random(7)[0])


def test_orbit_cameras_go_round_the_origin():
  mvs = np.asarray(trajectories.modelviews(*trajectories.orbit(4)))
  centers = np.asarray(cameras.camera_center(mvs))
  np.testing.assert_allclose(centers, [[0, 0, 1], [1, 0, 0], [0, 0, -1], [-1, 0, 0]], atol=1e-6)
