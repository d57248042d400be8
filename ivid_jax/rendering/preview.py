"""A fast preview of the fusion renderer: point splatting instead of rasterisation.

Every pixel of every view is one point (world position from its depth,
colour, and the aggregation weight of `geometry.render.aggregation_weight`,
which depends only on the view that saw it, so it is computed once per scene;
points of discontinuity sheets are dropped, eroded ones keep the 1e-8 factor).
A frame projects all points to its pixels; each view keeps, per pixel, its
points within 1% of its nearest one there, tested against the view's depth
buffer dilated by one pixel so that a view's background does not show through
the cracks of its own foreground; the survivors of all views are summed into
the same accumulator the exact renderer uses (`geometry.render.Accumulator`,
`resolve`), with no depth test across views, as the authors'. Remaining
one-pixel cracks are filled from their neighbours. No supersampling: the
output is at the views' resolution.

It is an approximation (silhouettes are one pixel off, strongly magnified
surfaces break up), meant for scrubbing through a scene interactively.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax import lax

from ivid_jax.geometry import cameras
from ivid_jax.geometry import image as image_ops
from ivid_jax.geometry import render
from ivid_jax.geometry import warp

PREVIEW_NEAR, PREVIEW_FAR = 0.1, 200.0
_DEPTH_TOLERANCE = 0.01  # relative: points this close to a view's nearest one at a pixel count


def scene_points(views: Array, modelviews: Array, valid: Array, *, fov: float, near: float,
                 far: float, atol: float, rtol: float, erode_rgb: int):
  """Per-scene point data: positions [V*N*N, 3], colours [.., 3], weights [..], view ids [..]."""
  num_views = views.shape[0]
  meshes = render.view_meshes(views, modelviews, fov=fov, near=near, far=far, padding=None,
                              atol=atol, rtol=rtol, erode_rgb=erode_rgb)
  centers = cameras.camera_center(modelviews)[:, None, :]
  flags = meshes.flags
  weight = render.aggregation_weight(meshes.normals, meshes.positions, centers,
                                     jnp.concatenate([jnp.zeros_like(flags[..., :2]),
                                                      flags[..., 2:]], -1),
                                     jnp.ones(flags.shape[:-1], bool))
  # Edge vertices belong to sheets, which only count where nothing else does: dropped here.
  weight = jnp.where((flags[..., 0] > 0) | ~valid[:, None], 0.0, weight)
  view_id = jnp.broadcast_to(jnp.arange(num_views, dtype=jnp.int32)[:, None], weight.shape)
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  return (flat(meshes.positions), flat(views[..., :3].reshape(num_views, -1, 3)), flat(weight),
          flat(view_id))


def _splat(points, colors, weights, view_id, target, *, num_views: int, n: int,
           fov: float) -> render.Accumulated:
  """One frame: the accumulated splats of all views."""
  proj = cameras.perspective(fov, PREVIEW_NEAR, PREVIEW_FAR) @ target
  clip = points @ proj[:2, :3].T + proj[:2, 3]
  w = points @ proj[3, :3] + proj[3, 3]  # camera-space depth
  inv_w = 1.0 / jnp.maximum(w, 1e-6)
  col = jnp.floor((clip[:, 0] * inv_w * 0.5 + 0.5) * n).astype(jnp.int32)
  row = jnp.floor((0.5 - clip[:, 1] * inv_w * 0.5) * n).astype(jnp.int32)
  ok = (weights > 0) & (w > PREVIEW_NEAR) & (col >= 0) & (col < n) & (row >= 0) & (row < n)
  pix = jnp.clip(row, 0, n - 1) * n + jnp.clip(col, 0, n - 1)
  addr = jnp.where(ok, view_id * (n * n) + pix, num_views * n * n)  # out of range: dropped
  zbuf = jnp.full((num_views * n * n,), jnp.inf, jnp.float32).at[addr].min(w, mode='drop')
  zbuf = -lax.reduce_window(-zbuf.reshape(num_views, n, n), -jnp.inf, lax.max, (1, 3, 3),
                            (1, 1, 1), 'SAME')
  front = ok & (w <= zbuf.reshape(-1)[jnp.minimum(addr, num_views * n * n - 1)] *
                (1.0 + _DEPTH_TOLERANCE))
  wt = jnp.where(front, weights, 0.0)
  valid = front & (weights > 1e-14)
  target_pix = jnp.where(front, pix, n * n)
  sums = jnp.zeros((n * n, 7), jnp.float32).at[target_pix].add(
      jnp.stack([wt * colors[:, 0], wt * colors[:, 1], wt * colors[:, 2], wt,
                 jnp.where(valid, inv_w, 0.0), valid.astype(jnp.float32),
                 (front & (weights > 1e-6)).astype(jnp.float32)], -1), mode='drop')
  sums = sums.reshape(n, n, 7)
  acc = render.Accumulator(color=sums[..., :3], weight=sums[..., 3], disparity=sums[..., 4],
                           depth_count=sums[..., 5].astype(jnp.int32),
                           color_count=sums[..., 6].astype(jnp.int32),
                           low_depth=jnp.zeros((n, n)), low_color=jnp.zeros((n, n, 3)))
  return render.resolve(acc, PREVIEW_NEAR)


def _fill_cracks(out: render.Accumulated) -> tuple[Array, Array]:
  """Empty pixels with at least 5 covered neighbours take their mean colour and depth."""
  covered = out.mask_depth.astype(jnp.float32)
  box = lambda a: lax.reduce_window(a, 0.0, lax.add, (3, 3) + (1,) * (a.ndim - 2),
                                    (1,) * a.ndim, 'SAME')
  count = box(covered)
  color_sum = box(out.color * covered[..., None])
  disp_sum = box(jnp.where(out.mask_depth, 1.0 / out.depth, 0.0))
  crack = ~out.mask_depth & (count >= 5)
  safe = jnp.maximum(count, 1.0)
  color = jnp.where(crack[..., None], color_sum / safe[..., None], out.color)
  depth = jnp.where(crack, safe / jnp.maximum(disp_sum, 1e-12), out.depth)
  return color, depth


def preview_frames(views: Array, modelviews: Array, targets: Array, *, valid: Array, fov: float,
                   near: float, far: float, atol: float, rtol: float, erode_rgb: int,
                   group: int | None) -> tuple[Array, Array]:
  """Preview frames: color [F, N, N, 3] (8-bit values), linear depth [F, N, N, 1]."""
  num_views, n = views.shape[0], views.shape[1]
  pts = scene_points(views, modelviews, valid, fov=fov, near=near, far=far, atol=atol, rtol=rtol,
                     erode_rgb=erode_rgb)

  def frames(tgts):
    def one(t):
      return _fill_cracks(_splat(*pts, t, num_views=num_views, n=n, fov=fov))
    return jax.vmap(one)(tgts)

  color, depth = warp.map_in_groups(frames, (targets,), group)
  return image_ops.to_uint8_values(color) / 255.0, depth[..., None]
