"""The jnp rasteriser: coverage, fill rule, depth, facing, large triangles, culling."""

import jax
import numpy as np
import pytest

from ivid_jax.geometry import cameras
from ivid_jax.geometry import mesh
from ivid_jax.geometry import raster

# Jitted as its callers run it: eagerly, each primitive of its loops would dispatch on its own.
_rasterize = jax.jit(raster.rasterize, static_argnames=('height', 'width', 'near', 'far',
                                                        'window', 'chunk', 'resolve'))

NEAR, FAR = 0.1, 200.0


def _render_plane(depth_map, modelview, size):
  m = mesh.depth_to_mesh(depth_map, cameras.view0())
  clip = raster.project(m.positions, modelview, cameras.perspective(45.0, NEAR, FAR))
  frags = _rasterize(clip[None], m.faces[None], height=size, width=size, near=NEAR, far=FAR)
  return m, frags


def test_every_sample_of_a_watertight_grid_is_covered_exactly_once():
  # Sample centres fall exactly on shared edges and vertices at 3x supersampling:
  # the fill rule must give each one to exactly one face (no cracks, no doubles).
  n, ssaa = 16, 3
  m, frags = _render_plane(np.full((n, n), 2.0, np.float32), cameras.view0(), n * ssaa)
  face = np.asarray(frags.face[0])
  inner = face[ssaa // 2 + 1:-(ssaa // 2 + 1), ssaa // 2 + 1:-(ssaa // 2 + 1)]
  assert np.all(inner >= 0)
  np.testing.assert_allclose(np.asarray(frags.depth[0])[face >= 0], 2.0, rtol=1e-5)
  assert bool(np.all(np.asarray(frags.front[0])[face >= 0]))
  # Barycentrics are convex weights.
  bary = np.asarray(frags.bary[0])[face >= 0]
  np.testing.assert_allclose(bary.sum(-1), 1.0, atol=1e-5)
  assert bary.min() > -1e-5


def test_a_face_covers_exactly_the_samples_inside_it():
  # One triangle, checked against a direct inside test of every sample centre.
  size = 37
  tri = np.array([[[-0.7, -0.5, -2.0], [0.8, -0.2, -2.5], [-0.1, 0.9, -1.5]]], np.float32)
  clip = raster.project(tri, np.eye(4, dtype=np.float32), cameras.perspective(45.0, NEAR, FAR))
  frags = _rasterize(clip, np.array([[[0, 1, 2]]], np.int32), height=size,
                           width=size, near=NEAR, far=FAR)
  c = np.asarray(clip[0])
  sx = (c[:, 0] / c[:, 3] + 1) * size / 2
  sy = (1 - c[:, 1] / c[:, 3]) * size / 2
  py, px = np.mgrid[0:size, 0:size] + 0.5
  e = [(sx[j] - sx[i]) * (py - sy[i]) - (sy[j] - sy[i]) * (px - sx[i])
       for i, j in [(1, 2), (2, 0), (0, 1)]]
  inside = (e[0] < 0) & (e[1] < 0) & (e[2] < 0) | (e[0] > 0) & (e[1] > 0) & (e[2] > 0)
  np.testing.assert_array_equal(np.asarray(frags.covered[0]), inside)
  assert inside.sum() > 300  # a large face: the span-expansion path


def test_magnified_surface_has_no_holes():
  # Moving 1.5 units towards a plane magnifies each face far beyond the fixed
  # window of small faces; every sample must still be covered.
  n = 16
  mv = cameras.look_at((0.0, 0.0, -0.5), (0.0, 0.0, -3.0))
  _, frags = _render_plane(np.full((n, n), 2.0, np.float32), mv, 64)
  assert bool(np.all(frags.covered))
  np.testing.assert_allclose(np.asarray(frags.depth), 0.5, rtol=1e-6)  # measured 1.2e-7


@pytest.mark.parametrize('near_first', [True, False])
def test_nearer_surface_occludes_farther_one_whatever_the_order(near_first):
  n = 8
  near_m = mesh.depth_to_mesh(np.full((n, n), 1.5, np.float32), cameras.view0())
  far_m = mesh.depth_to_mesh(np.full((n, n), 3.0, np.float32), cameras.view0())
  first, second = (near_m, far_m) if near_first else (far_m, near_m)
  positions = np.concatenate([first.positions, second.positions])
  faces = np.concatenate([first.faces, second.faces + n * n])
  mv = cameras.orbit_camera(0.1, 0.05)
  clip = raster.project(positions, mv, cameras.perspective(45.0, NEAR, FAR))
  frags = _rasterize(clip[None], faces[None], height=48, width=48, near=NEAR, far=FAR)
  face = np.asarray(frags.face[0])
  near_faces = (face < len(first.faces)) if near_first else (face >= len(first.faces))
  covered = face >= 0
  # The near plane hides the far one wherever both are seen (it covers less
  # of the image, being smaller in the frame of the rotated camera).
  near_visible = np.asarray(_rasterize(
      raster.project(near_m.positions, mv, cameras.perspective(45.0, NEAR, FAR))[None],
      near_m.faces[None], height=48, width=48, near=NEAR, far=FAR).covered[0])
  np.testing.assert_array_equal(near_faces & covered, near_visible)
  assert near_visible.sum() > 500 and (covered & ~near_visible).sum() > 0


def test_cull_back_discards_back_faces_only():
  n = 8
  m = mesh.depth_to_mesh(np.full((n, n), 2.0, np.float32), cameras.view0())
  # Seen from behind the plane every face is back-facing.
  behind = cameras.look_at((0.0, 0.0, -3.0), (0.0, 0.0, 0.0))
  clip = raster.project(m.positions, behind, cameras.perspective(45.0, NEAR, FAR))[None]
  faces = m.faces[None]
  kept = _rasterize(clip, faces, height=32, width=32, near=NEAR, far=FAR)
  assert bool(np.any(kept.covered)) and not bool(np.any(kept.front))
  cull = np.ones(faces.shape[:2], bool)
  culled = _rasterize(clip, faces, height=32, width=32, near=NEAR, far=FAR, cull_back=cull)
  assert not bool(np.any(culled.covered))
  front = raster.project(m.positions, cameras.view0(), cameras.perspective(45.0, NEAR, FAR))[None]
  seen = _rasterize(front, faces, height=32, width=32, near=NEAR, far=FAR, cull_back=cull)
  assert bool(np.any(seen.covered))


def test_interpolate_reproduces_linear_attributes():
  n = 8
  m, frags = _render_plane(np.full((n, n), 2.0, np.float32), cameras.view0(), 24)
  uv = np.asarray(raster.interpolate(m.uv[None], m.faces[None], frags))[0]
  covered = np.asarray(frags.covered[0])
  py, px = np.mgrid[0:24, 0:24] + 0.5
  np.testing.assert_allclose(uv[..., 0][covered], (px / 24)[covered], atol=1e-5)
  np.testing.assert_allclose(uv[..., 1][covered], (py / 24)[covered], atol=1e-5)


def test_input_contracts():
  with pytest.raises(ValueError, match='clip must be'):
    _rasterize(np.zeros((3, 4)), np.zeros((1, 1, 3), np.int32), height=4, width=4,
                     near=NEAR, far=FAR)
