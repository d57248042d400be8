"""RGBD -> grid mesh: unprojection, triangulation, flags, padding."""

import numpy as np
import pytest

from ivid_jax.geometry import cameras
from ivid_jax.geometry import mesh


def test_unproject_constant_depth_is_a_plane_filling_the_frustum():
  n, d = 8, 2.0
  points, uv = mesh.unproject(np.full((n, n), d, np.float32), fov=45.0)
  np.testing.assert_allclose(points[..., 2], -d)
  half = np.tan(np.radians(22.5)) * d
  # Pixel centres: the outermost ones sit half a pixel inside the frustum.
  assert float(points[0, -1, 0]) == pytest.approx(half * (1 - 1 / n), rel=1e-5)
  assert float(points[0, 0, 1]) == pytest.approx(half * (1 - 1 / n), rel=1e-5)
  np.testing.assert_allclose(uv[0, 0], [0.5 / n, 0.5 / n])


def test_grid_faces_are_counter_clockwise_and_use_the_shorter_diagonal():
  n = 6
  rng = np.random.default_rng(0)
  d = rng.uniform(1.0, 2.0, (n, n)).astype(np.float32)
  m = mesh.depth_to_mesh(d, cameras.view0())
  assert m.faces.shape == (2 * (n - 1) ** 2, 3)
  p = np.asarray(m.positions)
  tri = p[np.asarray(m.faces)]
  normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
  to_camera = np.array([0.0, 0.0, 1.0]) - tri.mean(1)
  assert np.all(np.sum(normal * to_camera, -1) > 0)  # front faces face view 0
  f = np.asarray(m.faces).reshape(n - 1, n - 1, 2, 3)
  tl, br = 0, n + 1
  diag_tl_br = np.sum((p[tl] - p[br]) ** 2) < np.sum((p[1] - p[n]) ** 2)
  shared = set(f[0, 0, 0]) & set(f[0, 0, 1])
  assert shared == ({tl, br} if diag_tl_br else {1, n})


def test_discontinuity_flags_mark_vertices_of_faces_across_a_depth_step():
  d = np.ones((8, 8), np.float32)
  d[:, 4:] = 3.0
  m = mesh.depth_to_mesh(d, cameras.view0(), atol=0.02, rtol=0.02)
  edge = np.asarray(m.flags[:, 0]).reshape(8, 8)
  np.testing.assert_array_equal(edge[:, 3:5], 1.0)
  assert edge[:, :3].sum() == 0 and edge[:, 5:].sum() == 0
  eroded = np.asarray(mesh.depth_to_mesh(d, cameras.view0(), atol=0.02, rtol=0.02,
                                         erode_rgb=1).flags[:, 2]).reshape(8, 8)
  np.testing.assert_array_equal(eroded[:, 2:6], 1.0)  # 3x3 around the edge vertices
  assert eroded[:, :2].sum() == 0 and eroded[:, 6:].sum() == 0


def test_numeric_padding_pushes_the_ring_out_by_p_pixels():
  n, p, d = 8, 4, 2.0
  m = mesh.depth_to_mesh(np.full((n, n), d, np.float32), cameras.view0(), padding=p)
  pos = np.asarray(m.positions).reshape(n + 2, n + 2, 3)
  pixel = 2 * np.tan(np.radians(22.5)) * d / n
  assert float(pos[5, 0, 0] - pos[5, 1, 0]) == pytest.approx(-p * pixel, rel=1e-5)
  assert float(pos[0, 5, 1] - pos[1, 5, 1]) == pytest.approx(p * pixel, rel=1e-5)
  padding = np.asarray(m.flags[:, 1]).reshape(n + 2, n + 2)
  assert padding.sum() == 4 * (n + 1) and padding[1:-1, 1:-1].sum() == 0


def test_frustum_padding_slides_the_ring_to_depth_point_one():
  n = 8
  m = mesh.depth_to_mesh(np.full((n, n), 2.0, np.float32), cameras.view0(), padding='frustum')
  pos = np.asarray(m.positions).reshape(n + 2, n + 2, 3)
  cam = pos - np.array([0.0, 0.0, 1.0])  # view 0 is a translation by (0, 0, -1)
  np.testing.assert_allclose(cam[0, :, 2], -0.1, rtol=1e-5)
  np.testing.assert_allclose(cam[1:-1, 1:-1, 2], -2.0, rtol=1e-6)
  # The ring stays on the rays one pixel outside the frame.
  ratio = cam[0, 5, 1] / -cam[0, 5, 2]
  assert ratio == pytest.approx(np.tan(np.radians(22.5)) * (1 + 1 / n), rel=1e-4)


def test_bad_padding_is_rejected():
  with pytest.raises(ValueError, match='padding'):
    mesh.depth_to_mesh(np.ones((4, 4), np.float32), cameras.view0(), padding='walls')
