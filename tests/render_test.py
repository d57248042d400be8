"""render_views: a stack of RGBD views into one camera, shared or per-view z-buffers."""

import jax.numpy as jnp
import numpy as np
import pytest

from ivid_jax.geometry import image
from ivid_jax.geometry import cameras
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import render

SIZE = 96  # 3x supersampling of the 32x32 views used here


@pytest.fixture(scope='module')
def chain(aggregate_ref):
  views = aggregate_ref['views'][:, ::4, ::4]  # 32x32
  return jnp.asarray(views), jnp.asarray(aggregate_ref['modelviews'])


def test_a_view_rendered_into_its_own_camera_is_itself(chain):
  views, mvs = chain
  r = render.render_views(views[:1], mvs[:1], mvs[0], size=SIZE, shared_zbuffer=False)
  color = np.asarray(image.block_center(r.color[0], 3))
  depth = np.asarray(image.block_center(r.depth[0][..., None], 3))[..., 0]
  lin = np.asarray(depth_lib.linearize_depth(views[0, ..., 3], depth_lib.SAMPLE_NEAR,
                                             depth_lib.SAMPLE_FAR))
  inner = (slice(1, -1), slice(1, -1))  # the border samples touch the frustum walls
  np.testing.assert_array_equal(color[inner], np.asarray(views[0, ..., :3])[inner])
  np.testing.assert_allclose(depth[inner], lin[inner], rtol=1e-5)
  assert np.asarray(r.weight[0]).min() >= 1e-16


def test_weights_of_a_fronto_parallel_plane_are_centre_biased():
  # Reference 10.3: exp(-20 angle) to the source camera; ~4e-4 at the middle
  # of an image edge (ray angle 0.39 rad), the 1e-4 floor in the corners.
  n = 32
  z = depth_lib.project_depth(2.0, depth_lib.SAMPLE_NEAR, depth_lib.SAMPLE_FAR)
  view = jnp.concatenate([jnp.full((1, n, n, 3), 0.5), jnp.full((1, n, n, 1), z)], -1)
  mv = cameras.view0()[None]
  w = np.asarray(render.render_views(view, mv, mv[0], size=3 * n, shared_zbuffer=False,
                                     erode_rgb=None).weight[0])
  size = 3 * n

  def expected(row, col):
    ndc = np.hypot(2 * (row + 0.5) / size - 1, 2 * (col + 0.5) / size - 1)
    return max(np.exp(-20 * np.arctan(ndc * np.tan(np.radians(22.5)))), 1e-4)

  for row, col in [(48, 48), (40, 60), (48, 2), (4, 4)]:
    assert w[row, col] == pytest.approx(expected(row, col), rel=1e-3)
  assert w[48, 0] == pytest.approx(1e-16)  # outside the outermost vertices: the frustum wall


def _plane_view(depth: float, color) -> np.ndarray:
  """A 32 x 32 view of a fronto-parallel plane at linear depth `depth` (sampling near/far)."""
  z = float(depth_lib.project_depth(depth, depth_lib.SAMPLE_NEAR, depth_lib.SAMPLE_FAR))
  return np.concatenate([np.broadcast_to(np.asarray(color, np.float32), (32, 32, 3)),
                         np.full((32, 32, 1), z, np.float32)], -1)


def test_shared_zbuffer_keeps_the_nearer_plane_and_invalid_views_draw_nothing():
  # Three planes seen from view 0 (world z = 1 - D): the far one comes first in the stack,
  # the nearest is switched off. Whatever the order, the visible surface is the plane at
  # D = 1.2, and its depth in a target camera is a ray-plane intersection.
  views = np.stack([_plane_view(2.0, (0, 1, 0)), _plane_view(1.2, (1, 0, 0)),
                    _plane_view(0.8, (0, 0, 1))])
  mvs = np.broadcast_to(np.asarray(cameras.view0()), (3, 4, 4))
  valid = jnp.array([True, True, False])
  target = cameras.orbit_camera(0.1, -0.05)
  shared = render.render_views(views, mvs, target, valid=valid, size=SIZE)
  f = cameras.focal_normalized(45.0)
  c = (np.arange(SIZE) + 0.5) / SIZE
  u, v = np.meshgrid(c, c)
  rays = np.stack([(u - 0.5) / f, (0.5 - v) / f, -np.ones_like(u)], -1)  # camera depth 1
  to_world = np.asarray(cameras.invert_rigid(target))
  eye, dirs = to_world[:3, 3], rays @ to_world[:3, :3].T
  expected_depth = ((1.0 - 1.2) - eye[2]) / dirs[..., 2]
  inner = (slice(6, -6), slice(6, -6))  # away from the frame's edges and frustum walls
  view = np.asarray(shared.view)[inner]
  np.testing.assert_array_equal(view, 1)
  np.testing.assert_allclose(np.asarray(shared.depth)[inner], expected_depth[inner], rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(shared.color)[inner], np.broadcast_to([1, 0, 0],
                                                                                 view.shape + (3,)))
  per_view = render.render_views(views, mvs, target, valid=valid, size=SIZE, shared_zbuffer=False)
  assert not bool(jnp.any(per_view.covered[2]))  # the invalid view draws nothing
  assert bool(jnp.all(per_view.covered[0][inner]))  # the far plane is there, behind


def test_aggregation_weight_follows_the_reference_rules():
  n = jnp.array([[0.0, 0.0, 1.0]] * 5)
  pos = jnp.zeros((5, 3))
  center = jnp.array([[0.0, 0.0, 1.0]] * 4 + [[0.1, 0.0, 1.0]])
  flags = jnp.array([[0, 0, 0], [0, 0, 1], [0, 0.5, 0], [1, 0, 0], [0, 0, 0]], jnp.float32)
  front = jnp.array([True, True, True, True, True])
  w = np.asarray(render.aggregation_weight(n, pos, center, flags, front))
  assert w[0] == pytest.approx(1.0)
  assert w[1] == pytest.approx(1e-8)
  assert w[2] == pytest.approx(1e-16) and w[3] == pytest.approx(1e-16)
  assert w[4] == pytest.approx(np.exp(-20 * np.arctan(0.1)), rel=1e-4)
  assert float(render.aggregation_weight(n[:1], pos[:1], center[:1], flags[:1],
                                         jnp.array([False]))[0]) == 0.0
