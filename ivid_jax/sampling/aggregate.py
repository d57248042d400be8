"""Aggregated conditioning: every earlier view, meshed and drawn into the new camera (reference 6.4).

The authors' `aggregate_conditions`: each earlier view becomes a grid mesh
('frustum' padding, discontinuity flags, RGB erosion, normals) drawn at 3x
supersampling into the target camera with its own depth buffer (no depth test
across views); the fragments are accumulated over views with the per-fragment
weights (`geometry.render.accumulate_views`, which the fusion renderer also
uses); colour is downsampled with 8-bit PIL Lanczos, depth point-sampled at
block centres, and the masks need 7 of 9 subsamples. Only the valid views are
drawn, so a sampler that keeps a fixed-size stack of views pays only for the
ones it has generated.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import image as image_ops
from ivid_jax.geometry import mesh as mesh_lib
from ivid_jax.geometry import render


class Condition(NamedTuple):
  """The conditional model's condition for one camera, all float32 [H, W, C] in [0, 1].

  Attributes:
    color: [H, W, 3] aggregated colour (8-bit quantised), 0 outside mask_rgb.
    depth: [H, W, 1] z-buffer depth (the sampler's near/far), 0 outside mask.
    mask: [H, W, 1] {0, 1} where the depth condition holds.
    mask_rgb: [H, W, 1] {0, 1} where the colour condition holds (a subset of mask).
    depth_convex: [H, W, 1] z-buffer depth before any masking: in holes, the
      farthest rubber sheet or frustum wall, 0 where nothing was drawn.
  """
  color: Array
  depth: Array
  mask: Array
  mask_rgb: Array
  depth_convex: Array

  def model_inputs(self) -> dict[str, Array]:
    """{'y' [.., 4] in [-1, 1], 'mask', 'mask_rgb', 'depth_convex' in [-1, 1]} as the sampler takes them."""
    return {'y': jnp.concatenate([self.color, self.depth], -1) * 2.0 - 1.0, 'mask': self.mask,
            'mask_rgb': self.mask_rgb, 'depth_convex': self.depth_convex * 2.0 - 1.0}


@functools.partial(jax.jit, static_argnames=('fov', 'near', 'far', 'atol', 'rtol', 'erode_rgb',
                                             'ssaa', 'kernel'))
def aggregate_condition(views: Array, modelviews: Array, valid: Array, target_modelview: Array,
                        *, fov: float = 45.0, near: float = depth_lib.SAMPLE_NEAR,
                        far: float = depth_lib.SAMPLE_FAR, atol: float = 0.03, rtol: float = 0.03,
                        erode_rgb: int = 3, ssaa: int = 3, kernel: str = 'jnp') -> Condition:
  """The condition for `target_modelview` aggregated from the valid views.

  Args:
    views: float [V, N, N, 4]: RGB in [0, 1] (not clipped: generated views are
      used as they come) and z-buffer depth with near/far in channel 3.
    modelviews: float [V, 4, 4] world-to-camera matrices of the views.
    valid: bool [V]; only these views are drawn.
    target_modelview: float [4, 4] the new camera.
    fov: degrees. near, far: the depth encoding (the sampler's 0.6 / 5).
    atol, rtol: discontinuity tolerances of the meshes and of the depth-edge test.
    erode_rgb: e: 7 x 7 vertex erosion in the meshes for e = 3, and a
      (2e - 1)^2 erosion of the final mask for mask_rgb.
    ssaa: supersampling factor per axis (the authors' 3).
    kernel: 'jnp' (any backend) or 'cpu' (the rasteriser's XLA:CPU kernel: same
      conditions up to the last bits of the angle weights; see
      `render.accumulate_views`). `raster_kernel.resolve('auto')` picks one.

  Returns:
    Condition [N, N, ...].
  """
  views = jnp.asarray(views, jnp.float32)
  if views.ndim != 4 or views.shape[-1] != 4 or views.shape[1] != views.shape[2]:
    raise ValueError(f'views must be [V, N, N, 4], got {views.shape}')
  num_views = views.shape[0]
  modelviews = jnp.asarray(modelviews, jnp.float32)
  if modelviews.shape != (num_views, 4, 4):
    raise ValueError(f'modelviews must be [{num_views}, 4, 4], got {modelviews.shape}')
  valid = jnp.asarray(valid, bool)
  if valid.shape != (num_views,):
    raise ValueError(f'valid must be [{num_views}], got {valid.shape}')
  meshes = condition_meshes(views, modelviews, fov=fov, near=near, far=far, atol=atol, rtol=rtol,
                            erode_rgb=erode_rgb)
  return condition_from_meshes(meshes, views[..., :3], modelviews, valid, target_modelview,
                               fov=fov, near=near, far=far, atol=atol, rtol=rtol,
                               erode_rgb=erode_rgb, ssaa=ssaa, kernel=kernel)


def condition_meshes(views: Array, modelviews: Array, *, fov: float = 45.0,
                     near: float = depth_lib.SAMPLE_NEAR, far: float = depth_lib.SAMPLE_FAR,
                     atol: float = 0.03, rtol: float = 0.03, erode_rgb: int = 3
                     ) -> mesh_lib.GridMesh:
  """The meshes the conditions draw, GridMesh [V, ...] of views [V, N, N, 4] (frustum padding).

  A view's mesh depends on that view alone: a sampler builds it once, when the
  view is generated, and keeps it for every later condition.
  """
  return render.view_meshes(views, modelviews, fov=fov, near=near, far=far, padding='frustum',
                            atol=atol, rtol=rtol, erode_rgb=erode_rgb)


def condition_from_meshes(meshes: mesh_lib.GridMesh, colors: Array, modelviews: Array,
                          valid: Array, target_modelview: Array, *, fov: float = 45.0,
                          near: float = depth_lib.SAMPLE_NEAR,
                          far: float = depth_lib.SAMPLE_FAR, atol: float = 0.03,
                          rtol: float = 0.03, erode_rgb: int = 3, ssaa: int = 3,
                          kernel: str = 'jnp') -> Condition:
  """`aggregate_condition` from the views' meshes (`condition_meshes`) and colours [V, N, N, 3]."""
  n = colors.shape[1]
  target = jnp.asarray(target_modelview, jnp.float32)[None]
  out = jax.tree.map(lambda a: a[0], render.accumulate_views(
      meshes, colors, modelviews, valid, target, size=n * ssaa, fov=fov, kernel=kernel))
  color = image_ops.downsample_color_8bit(out.color, n)
  z = depth_lib.project_depth(image_ops.block_center(out.depth[..., None], ssaa), near, far)
  min_count = 0.75 * ssaa ** 2
  mask = image_ops.block_count(out.mask_depth, ssaa)[..., None] > min_count
  mask_rgb = image_ops.block_count(out.mask_color, ssaa)[..., None] > min_count
  depth_convex = z
  mask &= depth_lib.depth_edge(z, atol, rtol)
  mask_rgb &= image_ops.erode(mask[..., 0], 2 * erode_rgb - 1)[..., None]
  maskf, mask_rgbf = mask.astype(jnp.float32), mask_rgb.astype(jnp.float32)
  return Condition(color=color * mask_rgbf, depth=z * maskf, mask=maskf, mask_rgb=mask_rgbf,
                   depth_convex=depth_convex)
