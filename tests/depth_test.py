"""Depth encodings: z-buffer, linear depth, disparity; the depth-edge test."""

import numpy as np
import pytest

from ivid_jax.geometry import depth


@pytest.mark.parametrize('near,far', [(0.5, 100.0), (0.6, 5.0)])
def test_zbuffer_linear_depth_round_trip(near, far):
  d = np.geomspace(near, far, 50).astype(np.float32)
  z = depth.project_depth(d, near, far)
  assert float(z[0]) == pytest.approx(0.0, abs=1e-6) and float(z[-1]) == pytest.approx(1.0, abs=1e-6)
  # float32 z near 1 keeps ~1e-7 of 1 - z, which far depths magnify (measured 2.0e-4 at far 100).
  np.testing.assert_allclose(depth.linearize_depth(z, near, far), d, rtol=2e-4)


def test_zbuffer_is_affine_in_disparity():
  z = np.linspace(0.0, 1.0, 11, dtype=np.float32)
  disp = np.asarray(depth.zbuffer_to_disparity(z))
  np.testing.assert_allclose(np.diff(disp), np.diff(disp)[0], rtol=1e-6)  # measured: equal
  np.testing.assert_allclose(depth.disparity_to_zbuffer(disp), z, atol=1e-6)
  # linearize_depth clips z to [1e-6, 1 - 1e-6] (as the reference does): skip z = 1.
  # Measured 9.5e-7.
  np.testing.assert_allclose(1.0 / disp[:-1], depth.linearize_depth(z[:-1]), rtol=1e-5)


def test_depth_edge_passes_smooth_surfaces_and_flags_steps():
  z = np.tile(np.linspace(0.2, 0.3, 16, dtype=np.float32), (16, 1))
  assert bool(np.all(depth.depth_edge(z)))
  step = z.copy()
  step[:, 8:] = 0.9
  ok = np.asarray(depth.depth_edge(step))
  assert not ok[5, 7] and not ok[5, 8]   # both sides of the step
  assert ok[5, 2] and ok[5, 13]          # far from it
