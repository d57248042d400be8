"""Fusion-based free-view rendering of a generated scene (reference 7).

`mode='exact'` is the authors' renderer (render.py): every view re-meshed
from its depth with a 32-pixel skirt, discontinuity flags and 7 x 7 RGB
erosion; all views drawn into every frame at 5x supersampling, each with its
own depth buffer, and accumulated with the aggregation weights
(`geometry.render.accumulate_views`, the function the sampler's conditions use;
on CPUs by the rasteriser's kernel, `geometry.raster_kernel`);
no mask (holes stay black, sheet-only pixels show the farthest sheet); 8-bit
colour, PIL Lanczos down to the view size; depth point-sampled at block
centres.

`mode='preview'` is a fast approximation for scrubbing through a scene:
see `preview_frames`.

Frames are independent: on CPU they are rendered one at a time (the
rasteriser's buffers stay in cache), on accelerators as a batch, and the views
of each frame are drawn one after another in a loop, so memory does not
grow with the number of views.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array

from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import image as image_ops
from ivid_jax.geometry import raster_kernel
from ivid_jax.geometry import render
from ivid_jax.geometry import warp
from ivid_jax.rendering import preview

MODES = ('exact', 'preview')
KERNELS = raster_kernel.KERNELS
KERNEL_GROUP = 16  # frames per CPU-kernel call: ~0.4 GB of clip vertices and samples
# render.py: AggregationRenderer(640, 128, near=0.1, far=200) and load_scene's meshes.
FUSION_SSAA = 5
FUSION_NEAR, FUSION_FAR = 0.1, 200.0
FUSION_PADDING = 32


def _check(views: Array, modelviews: Array, target_modelviews: Array, valid: Array | None):
  views = jnp.asarray(views, jnp.float32)
  if views.ndim != 4 or views.shape[-1] != 4 or views.shape[1] != views.shape[2]:
    raise ValueError(f'views must be [V, N, N, 4], got {views.shape}')
  num_views = views.shape[0]
  modelviews = jnp.asarray(modelviews, jnp.float32)
  if modelviews.shape != (num_views, 4, 4):
    raise ValueError(f'modelviews must be [{num_views}, 4, 4], got {modelviews.shape}')
  targets = jnp.asarray(target_modelviews, jnp.float32)
  if targets.ndim != 3 or targets.shape[1:] != (4, 4):
    raise ValueError(f'target_modelviews must be [F, 4, 4], got {targets.shape}')
  valid = jnp.ones((num_views,), bool) if valid is None else jnp.asarray(valid, bool)
  if valid.shape != (num_views,):
    raise ValueError(f'valid must be [{num_views}], got {valid.shape}')
  return views, modelviews, targets, valid


def resolve_kernel(kernel: str) -> str:
  """'jnp' or 'cpu' for `kernel` ('auto': the CPU kernel on the CPU backend where it builds)."""
  return raster_kernel.resolve(kernel)


def render_scene(views: Array, modelviews: Array, target_modelviews: Array, *,
                 valid: Array | None = None, fov: float = 45.0,
                 near: float = depth_lib.SAMPLE_NEAR, far: float = depth_lib.SAMPLE_FAR,
                 mode: str = 'exact', atol: float = 0.03, rtol: float = 0.03, erode_rgb: int = 3,
                 ssaa: int = FUSION_SSAA, group: int | None = None,
                 kernel: str = 'auto') -> tuple[Array, Array]:
  """Renders a scene's views from new cameras.

  Args:
    views: float [V, N, N, 4]: colour in [0, 1] and z-buffer depth (near/far).
    modelviews: float [V, 4, 4] the views' world-to-camera matrices.
    target_modelviews: float [F, 4, 4] the frames' cameras.
    valid: optional bool [V]: views to use (default all); the others cost nothing.
    fov: degrees. near, far: the depth encoding of the views (the sampler's 0.6 / 5).
    mode: 'exact' (the authors' renderer) or 'preview' (fast, approximate).
    atol, rtol, erode_rgb: mesh flags as the authors' load_scene builds them.
    ssaa: supersampling per axis of 'exact' (the authors' 5).
    group: frames rendered together (static); None: 1 on CPU (16 with the CPU kernel), all
      elsewhere.
    kernel: how 'exact' runs: 'jnp' (any backend), 'cpu' (the compiled XLA:CPU kernel,
      `geometry.raster_kernel`; same result up to float32 rounding of the angle weights, several
      times faster), 'auto' (the kernel on the CPU backend where it builds, else jnp).

  Returns:
    color float32 [F, N, N, 3] in [0, 1] (8-bit values), black where no view
    reaches; depth float32 [F, N, N, 1] linear (camera-space z), 0.1 (the
    renderer's near plane) where nothing was drawn.
  """
  use = resolve_kernel(kernel) if mode == 'exact' else 'jnp'
  return _render_scene(views, modelviews, target_modelviews, valid=valid, fov=fov, near=near,
                       far=far, mode=mode, atol=atol, rtol=rtol, erode_rgb=erode_rgb, ssaa=ssaa,
                       group=group, kernel=use)


@functools.partial(jax.jit, static_argnames=('fov', 'near', 'far', 'mode', 'atol', 'rtol',
                                             'erode_rgb', 'ssaa', 'group', 'kernel'))
def _render_scene(views: Array, modelviews: Array, target_modelviews: Array, *,
                  valid: Array | None, fov: float, near: float, far: float, mode: str,
                  atol: float, rtol: float, erode_rgb: int, ssaa: int, group: int | None,
                  kernel: str) -> tuple[Array, Array]:
  """`render_scene` with the kernel chosen (static): 'jnp' or 'cpu'."""
  if mode not in MODES:
    raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
  views, modelviews, targets, valid = _check(views, modelviews, target_modelviews, valid)
  n = views.shape[1]
  if mode == 'preview':
    return preview.preview_frames(views, modelviews, targets, valid=valid, fov=fov, near=near,
                                  far=far, atol=atol, rtol=rtol, erode_rgb=erode_rgb, group=group)
  size = n * ssaa
  meshes = render.view_meshes(views, modelviews, fov=fov, near=near, far=far,
                              padding=FUSION_PADDING, atol=atol, rtol=rtol, erode_rgb=erode_rgb)
  frames = lambda t: render.accumulate_views(
      meshes, views[..., :3], modelviews, valid, t, size=size, fov=fov,
      render_near=FUSION_NEAR, render_far=FUSION_FAR, kernel=kernel)
  if kernel == 'cpu' and group is None:
    # The kernel walks its frames itself and reuses its buffers across them; equal groups
    # of at most KERNEL_GROUP frames, so little padding is rendered (60 frames: 4 x 15).
    count = targets.shape[0]
    group = -(-count // -(-count // KERNEL_GROUP))
  out = warp.map_in_groups(frames, (targets,), group)
  color = image_ops.downsample_color_8bit(out.color, n)
  depth = image_ops.block_center(out.depth[..., None], ssaa)
  return color, depth

