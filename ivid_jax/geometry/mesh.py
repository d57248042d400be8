"""RGBD image -> grid mesh: unprojection, triangulation, flags, padding, normals.

A depth map of N x N pixels becomes a regular grid of vertices, one per pixel
centre, optionally ringed by one row/column of padding vertices, and each grid
quad is split along its shorter 3D diagonal into two counter-clockwise (as seen
from the source camera) triangles. Everything here follows reference section
2.3 and the authors' `depth_to_mesh` bit for bit where it matters (the diagonal
choice, the flag rules, the padding geometry).

Pixel (row i, col j) has texture coordinates u = (j + 0.5) / N, v = (i + 0.5) / N
(v grows downwards, so texel (i, j) is at floor(v N), floor(u N)) and camera
point ((u - 0.5) / f D, (0.5 - v) / f D, -D), f = 0.5 / tan(fov / 2).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp
from jax import Array

from ivid_jax.geometry import image as image_ops
from ivid_jax.geometry import cameras

Padding = Union[None, int, float, str]  # None, a number of pixels, or 'frustum'

# Bits of the per-vertex flag, as the authors' shaders decode it.
FLAG_EDGE, FLAG_PADDING, FLAG_ERODED = 0, 1, 2

# 'frustum' padding slides ring vertices along their rays to this camera depth.
FRUSTUM_WALL_DEPTH = 0.1


class GridMesh(NamedTuple):
  """A triangle mesh over an image grid (M = N, or N + 2 with padding).

  Attributes:
    positions: float32 [..., M*M, 3] world-space vertex positions.
    uv: float32 [..., M*M, 2] texture coordinates (u right, v down) in [0, 1].
    faces: int32 [..., 2*(M-1)**2, 3] vertex indices, two per grid quad,
      counter-clockwise as seen from the source camera.
    flags: float32 [..., M*M, 3] per-vertex {0, 1} flags (edge, padding,
      eroded), interpolated by the rasteriser like the authors' `i_flag` bits.
    normals: float32 [..., M*M, 3] world-space unit normals pointing towards
      the source camera, or None when not requested.
  """
  positions: Array
  uv: Array
  faces: Array
  flags: Array
  normals: Array | None = None


def unproject(depth: Array, fov: float = 45.0) -> tuple[Array, Array]:
  """Camera-space points and texture coordinates of every pixel centre.

  Args:
    depth: float [N, N] linear depth D (not z-buffer).
    fov: field of view in degrees.

  Returns:
    points: float32 [N, N, 3] camera-space points (OpenGL axes, z = -D).
    uv: float32 [N, N, 2] texture coordinates.
  """
  n = depth.shape[-1]
  c = (jnp.arange(n, dtype=jnp.float32) + 0.5) / n
  f = cameras.focal_normalized(fov)
  d = depth.astype(jnp.float32)
  x = (c[None, :] - 0.5) / f * d
  y = (0.5 - c[:, None]) / f * d
  points = jnp.stack([x, y, -d], axis=-1)
  u, v = jnp.meshgrid(c, c, indexing='xy')
  return points, jnp.stack([u, v], axis=-1)


def grid_faces(points: Array) -> Array:
  """Triangulates an M x M point grid along each quad's shorter 3D diagonal.

  With TL = (i, j), TR = (i, j+1), BL = (i+1, j), BR = (i+1, j+1): if
  |TL - BR| < |TR - BL| the triangles are (TR, TL, BR), (BL, BR, TL), else
  (TR, TL, BL), (BL, BR, TR).

  Args:
    points: float [M, M, 3].

  Returns:
    int32 [2 (M-1)^2, 3], quads in row-major order, two faces per quad.
  """
  m = points.shape[0]
  idx = jnp.arange(m * m, dtype=jnp.int32).reshape(m, m)
  tl, tr, bl, br = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
  d1 = jnp.sum(jnp.square(points[:-1, :-1] - points[1:, 1:]), axis=-1)
  d2 = jnp.sum(jnp.square(points[:-1, 1:] - points[1:, :-1]), axis=-1)
  short_tl_br = d1 < d2
  f1 = jnp.stack([tr, tl, jnp.where(short_tl_br, br, bl)], axis=-1)
  f2 = jnp.stack([bl, br, jnp.where(short_tl_br, tl, tr)], axis=-1)
  return jnp.stack([f1, f2], axis=-2).reshape(-1, 3)


def discontinuous_faces(faces: Array, depth: Array, atol: float, rtol: float) -> Array:
  """Faces spanning a depth discontinuity: range(D) > atol and range(1/D) > rtol.

  Args:
    faces: int32 [T, 3].
    depth: float [V] linear depth per vertex.

  Returns:
    bool [T].
  """
  d = depth[faces]
  inv = 1.0 / d
  return ((d.max(-1) - d.min(-1)) > atol) & ((inv.max(-1) - inv.min(-1)) > rtol)


def depth_normals(points: Array) -> Array:
  """Per-pixel normals of a camera-space point grid (the authors' Sobel rule).

  Horizontal central differences smoothed over rows with [1, 2, 1] / 4, vertical
  ones (pointing up) smoothed over columns; normal = cross(horizontal,
  vertical), normalised. Borders use edge padding (one-sided differences).

  Args:
    points: float [N, N, 3].

  Returns:
    float32 [N, N, 3] unit normals pointing towards the camera.
  """
  p = jnp.pad(points, ((1, 1), (1, 1), (0, 0)), mode='edge')
  ex = p[:, 2:] - p[:, :-2]
  ey = p[:-2, :] - p[2:, :]
  ex = (ex[:-2] + 2.0 * ex[1:-1] + ex[2:]) / 4.0
  ey = (ey[:, :-2] + 2.0 * ey[:, 1:-1] + ey[:, 2:]) / 4.0
  n = jnp.cross(ex, ey)
  return n / jnp.linalg.norm(n, axis=-1, keepdims=True)


def _pad_ring(points: Array, depth: Array, padding: Padding, fov: float) -> Array:
  """Moves the (already edge-replicated) ring of an [N+2, N+2] grid outwards."""
  n = points.shape[0] - 2
  plane = 2.0 * math.tan(math.radians(fov) / 2)
  per_pixel = plane / n if padding == 'frustum' else float(padding) * plane / n
  d = depth
  points = points.at[0, :, 1].add(per_pixel * d[0, :])
  points = points.at[-1, :, 1].add(-per_pixel * d[-1, :])
  points = points.at[:, 0, 0].add(-per_pixel * d[:, 0])
  points = points.at[:, -1, 0].add(per_pixel * d[:, -1])
  if padding == 'frustum':
    ring = ring_mask(n + 2)
    scale = jnp.where(ring, -FRUSTUM_WALL_DEPTH / points[..., 2], 1.0)
    points = points * scale[..., None]
  return points


def ring_mask(m: int) -> Array:
  """bool [m, m], True on the outermost row and column."""
  r = jnp.zeros((m, m), bool)
  return r.at[0, :].set(True).at[-1, :].set(True).at[:, 0].set(True).at[:, -1].set(True)


def depth_to_mesh(depth: Array, modelview: Array, *, fov: float = 45.0,
                  padding: Padding = None, atol: float | None = None,
                  rtol: float | None = None, erode_rgb: int | None = None,
                  normals: bool = False) -> GridMesh:
  """Builds the grid mesh of one depth map (reference `depth_to_mesh`).

  Args:
    depth: float [N, N] or [N, N, 1] linear depth D of the source view.
    modelview: float [4, 4] world-to-camera matrix of the source view.
    fov: field of view in degrees.
    padding: None; a number P of pixels (ring pushed P pixels outside the
      frame at the border depth: the training warp uses N, the renderer 32);
      or 'frustum' (ring one pixel out, slid along its rays to depth 0.1).
    atol, rtol: discontinuity tolerances on linear depth; both None means no
      edge flags (a missing one counts as 0).
    erode_rgb: radius e > 0 flags vertices within a (2e+1)^2 box of an edge vertex.
    normals: also compute world-space normals.

  Returns:
    A GridMesh with M = N (+ 2 with padding).
  """
  if depth.ndim == 3:
    depth = depth[..., 0]
  if depth.ndim != 2 or depth.shape[0] != depth.shape[1]:
    raise ValueError(f'depth_to_mesh expects a square [N, N] depth map, got {depth.shape}')
  if isinstance(padding, str) and padding != 'frustum':
    raise ValueError(f"padding must be None, a number of pixels or 'frustum', got {padding!r}")
  depth = depth.astype(jnp.float32)
  points, uv = unproject(depth, fov)
  nrm = depth_normals(points) if normals else None

  if padding is not None:
    edge = lambda a: jnp.pad(a, ((1, 1), (1, 1), (0, 0)), mode='edge')
    points, uv = edge(points), edge(uv)
    depth = jnp.pad(depth, 1, mode='edge')
    if nrm is not None:
      nrm = edge(nrm)
    points = _pad_ring(points, depth, padding, fov)
    padding_flag = ring_mask(depth.shape[0])
  else:
    padding_flag = jnp.zeros(depth.shape, bool)
  m = depth.shape[0]

  faces = grid_faces(points)
  flat_depth = depth.reshape(-1)
  if atol is not None or rtol is not None:
    disc = discontinuous_faces(faces, flat_depth, atol or 0.0, rtol or 0.0)
    edge_flag = jnp.zeros(m * m, bool).at[faces].max(jnp.broadcast_to(disc[:, None], faces.shape))
  else:
    edge_flag = jnp.zeros(m * m, bool)

  if erode_rgb is not None and erode_rgb > 0:
    keep = image_ops.erode(~edge_flag.reshape(m, m), 2 * erode_rgb + 1)
    eroded_flag = ~keep.reshape(-1)
  else:
    eroded_flag = jnp.zeros(m * m, bool)

  cam_to_world = cameras.invert_rigid(modelview)
  rot, trans = cam_to_world[:3, :3], cam_to_world[:3, 3]
  positions = points.reshape(-1, 3) @ rot.T + trans
  world_normals = None if nrm is None else nrm.reshape(-1, 3) @ rot.T
  flags = jnp.stack([edge_flag, padding_flag.reshape(-1), eroded_flag], axis=-1)
  return GridMesh(positions=positions, uv=uv.reshape(-1, 2), faces=faces,
                  flags=flags.astype(jnp.float32), normals=world_normals)


def batched_depth_to_mesh(depth: Array, modelview: Array, **kwargs) -> GridMesh:
  """`depth_to_mesh` over a leading batch axis of depth [B, N, N(, 1)] and modelview [B, 4, 4]."""
  return jax.vmap(lambda d, m: depth_to_mesh(d, m, **kwargs))(depth, modelview)
