"""Forward-backward warping: the conditional model's training pairs (reference 2.5).

The source view (view 0) is lifted to a mesh, rendered from a second camera
V1, the render is lifted again with its discontinuities flagged, and rendered
back into view 0. What survives the round trip is the condition; the rest are
holes shaped like the disocclusions that a real novel view would have.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax import lax

from ivid_jax.geometry import image as image_ops
from ivid_jax.geometry import cameras
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import mesh as mesh_lib
from ivid_jax.geometry import raster
from ivid_jax.geometry import raster_kernel

# The authors' training warp renderer (SimpleRenderer in WarpDataset).
WARP_RENDER_NEAR, WARP_RENDER_FAR = 0.1, 200.0


class Warped(NamedTuple):
  """Result of a forward-backward warp, in the source view's frame.

  Attributes:
    color: float32 [..., H, W, 3] in [0, 1], 8-bit quantised, 0 in holes.
    depth: float32 [..., H, W, 1] z-buffer (the input's near/far), 0 in holes.
    mask: float32 [..., H, W, 1] 1 where the condition is valid.
  """
  color: Array
  depth: Array
  mask: Array


class Rendered(NamedTuple):
  """A textured grid mesh rendered at supersampled resolution.

  Attributes:
    color: [B, S, S, C] nearest texel, the texture's dtype (0 for back faces and empty).
    alpha: bool [B, S, S] front-facing and not an all-edge face.
    depth: float32 [B, S, S] camera-space depth, `far` where empty.
  """
  color: Array
  alpha: Array
  depth: Array


def texture_nearest(texture: Array, uv: Array) -> Array:
  """Nearest-texel lookup with clamp-to-edge (OpenGL NEAREST, CLAMP_TO_EDGE).

  Args:
    texture: [B, N, N, C] of any dtype, row 0 at v = 0.
    uv: float [B, H, W, 2] texture coordinates in [0, 1].

  Returns:
    [B, H, W, C], texture's dtype.
  """
  bsz, n_rows, n_cols, channels = texture.shape
  col = jnp.clip(jnp.floor(uv[..., 0] * n_cols), 0, n_cols - 1).astype(jnp.int32)
  row = jnp.clip(jnp.floor(uv[..., 1] * n_rows), 0, n_rows - 1).astype(jnp.int32)
  texel = (jnp.arange(bsz, dtype=jnp.int32)[:, None, None] * n_rows + row) * n_cols + col
  flat = texture.reshape(-1, channels)
  # Per-channel 1-D gathers: much faster on CPU than gathering [.., C] rows.
  return jnp.stack([flat[:, c][texel] for c in range(channels)], -1)


def render_textured(mesh: mesh_lib.GridMesh, texture: Array, modelview: Array, *,
                    size: int, fov: float = 45.0, near: float = WARP_RENDER_NEAR,
                    far: float = WARP_RENDER_FAR, kernel: str = 'jnp') -> Rendered:
  """The authors' SimpleRenderer: one textured grid mesh per batch element.

  Back faces render black with alpha 0; front faces whose interpolated edge
  flag exceeds 0.999 render their texel with alpha 0; every fragment occludes.

  Args:
    mesh: GridMesh with a leading batch axis B.
    texture: float [B, N, N, 3].
    modelview: float [B, 4, 4] target camera.
    size: render resolution (static).
    kernel: 'jnp' (`raster.rasterize`, any backend) or 'cpu' (the same fragments from
      the rasteriser's XLA:CPU kernel, `raster_kernel.rasterize`).

  Returns:
    Rendered [B, size, size].
  """
  proj = cameras.perspective(fov, near, far)
  clip = raster.project(mesh.positions, modelview, proj)
  if kernel == 'cpu':
    frags = raster.Fragments(*raster_kernel.rasterize(clip, mesh.faces, height=size, width=size,
                                                      near=near, far=far))
  else:
    frags = raster.rasterize(clip, mesh.faces, height=size, width=size, near=near, far=far)
  attrs = jnp.concatenate([mesh.uv, mesh.flags[..., :1]], axis=-1)
  interp = raster.interpolate(attrs, mesh.faces, frags)
  color = texture_nearest(texture, interp[..., :2])
  color = jnp.where(frags.front[..., None], color, jnp.zeros((), color.dtype))
  alpha = frags.front & ~(interp[..., 2] > 0.999)
  return Rendered(color=color, alpha=alpha, depth=frags.depth)


def _as_batch(rgbd: Array, modelview1: Array, modelview0: Array | None):
  single = rgbd.ndim == 3
  if single:
    rgbd = rgbd[None]
    modelview1 = jnp.asarray(modelview1)[None] if jnp.ndim(modelview1) == 2 else modelview1
  if rgbd.ndim != 4 or rgbd.shape[-1] != 4:
    raise ValueError(f'rgbd must be [H, W, 4] or [B, H, W, 4], got {rgbd.shape}')
  if rgbd.shape[1] != rgbd.shape[2]:
    raise ValueError(f'rgbd must be square, got {rgbd.shape[1]}x{rgbd.shape[2]}')
  bsz = rgbd.shape[0]
  modelview1 = jnp.asarray(modelview1, jnp.float32)
  if modelview1.shape != (bsz, 4, 4):
    raise ValueError(f'modelview1 must be [{bsz}, 4, 4] for rgbd {rgbd.shape}, got {modelview1.shape}')
  if modelview0 is None:
    modelview0 = cameras.view0()
  modelview0 = jnp.broadcast_to(jnp.asarray(modelview0, jnp.float32), (bsz, 4, 4))
  return single, rgbd.astype(jnp.float32), modelview1, modelview0


def map_in_groups(fn, args, group: int | None):
  """Applies a batched `fn` to groups of `group` examples of `args` with `lax.map`.

  Rasterising a whole batch at once keeps accelerators busy, but on CPU it
  spills the caches: one image at a time is about 1.4x faster there. None
  picks 1 on CPU and the whole batch elsewhere. The batch is padded (with its
  last example) to a multiple of `group`.
  """
  bsz = jax.tree.leaves(args)[0].shape[0]
  if group is None:
    group = 1 if jax.default_backend() == 'cpu' else bsz
  group = max(1, min(int(group), bsz))
  if group == bsz:
    return fn(*args)
  n_groups = -(-bsz // group)
  pad = n_groups * group - bsz

  def split(a):
    a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a
    return a.reshape((n_groups, group) + a.shape[1:])

  out = lax.map(lambda xs: fn(*xs), jax.tree.map(split, args))
  return jax.tree.map(lambda a: a.reshape((n_groups * group,) + a.shape[2:])[:bsz], out)


@functools.partial(jax.jit, static_argnames=('fov', 'near', 'far', 'padding', 'ssaa', 'atol', 'rtol',
                                             'group', 'kernel'))
def forward_backward_warp(rgbd: Array, modelview1: Array, *, modelview0: Array | None = None,
                          fov: float = 45.0, near: float = depth_lib.TRAIN_NEAR,
                          far: float = depth_lib.TRAIN_FAR,
                          padding: mesh_lib.Padding | str = 'image',
                          ssaa: int = 3, atol: float = 0.02, rtol: float = 0.02,
                          group: int | None = None, kernel: str = 'auto') -> Warped:
  """Warps RGBD images to camera 1 and back (the authors' `forward_backward_warp`).

  The defaults are the authors' training settings (reference 2.5): padding as
  wide as the image, SSAA 3, tolerances 0.02, near/far 0.5/100.

  Args:
    rgbd: float [H, W, 4] or [B, H, W, 4]: colour in [0, 1] and z-buffer depth
      (near/far below) in channel 3. Square images.
    modelview1: float [4, 4] or [B, 4, 4] world-to-camera matrix of V1.
    modelview0: float [4, 4] or [B, 4, 4] of the source view; default view 0.
    fov: field of view, degrees.
    near, far: the z-buffer encoding of the depth channel.
    padding: mesh padding of the source mesh: 'image' (the training setting,
      a skirt as wide as the image: 128 px at 128 px), a number of pixels,
      None or 'frustum' (`mesh.depth_to_mesh`).
    ssaa: supersampling factor of both renders.
    atol, rtol: discontinuity tolerances (mesh edge flags on linear depth and
      the final `depth_edge` test on z).
    group: images rasterised together (static); the groups run one after
      another. None: 1 on CPU (with either path), the whole batch on accelerators.
    kernel: 'auto' (the rasteriser's XLA:CPU kernel on the CPU backend where it
      builds, else jnp), 'cpu' or 'jnp': the same fragments either way.

  Returns:
    Warped (color, depth, mask) with the input's batch shape.
  """
  single, rgbd, mv1, mv0 = _as_batch(rgbd, modelview1, modelview0)
  kernel = raster_kernel.resolve(kernel)
  fn = functools.partial(_warp_batch, fov=fov, near=near, far=far, padding=padding, ssaa=ssaa,
                         atol=atol, rtol=rtol, kernel=kernel)
  out = map_in_groups(fn, (rgbd, mv1, mv0), group)
  return jax.tree.map(lambda a: a[0], out) if single else out


def _warp_batch(rgbd: Array, mv1: Array, mv0: Array, *, fov, near, far, padding, ssaa, atol,
                rtol, kernel) -> Warped:
  """forward_backward_warp on [B, N, N, 4] with [B, 4, 4] cameras."""
  n = rgbd.shape[1]
  size = n * ssaa
  padding = n if padding == 'image' else padding
  block_min = 0.75 * ssaa ** 2

  # View 0 -> V1: no edge flags, so stretched sheets render opaque.
  d0 = depth_lib.linearize_depth(rgbd[..., 3], near, far)
  mesh0 = mesh_lib.batched_depth_to_mesh(d0, mv0, fov=fov, padding=padding)
  # Colours are rendered as packed 8-bit words: the authors truncate every
  # render to 8 bits before resampling, and nearest-texel lookup commutes
  # with that truncation, so this is exact and needs one gather per sample.
  tex0 = image_ops.pack_rgb8(image_ops.to_uint8_values(rgbd[..., :3]))[..., None]
  r1 = render_textured(mesh0, tex0, mv1, size=size, fov=fov, kernel=kernel)
  # V1's colour stays as 8-bit values: it is the next render's packed texture.
  values1 = image_ops.resize_lanczos_uint8(image_ops.unpack_rgb8(r1.color[..., 0]), n)
  depth1 = image_ops.block_center(r1.depth[..., None], ssaa)[..., 0]

  # V1 -> view 0: sheets are now steep in V1 and get flagged, so they vanish.
  mesh1 = mesh_lib.batched_depth_to_mesh(depth1, mv1, fov=fov, atol=atol, rtol=rtol)
  r0 = render_textured(mesh1, image_ops.pack_rgb8(values1)[..., None], mv0, size=size, fov=fov,
                       kernel=kernel)
  color = image_ops.downsample_color_8bit(r0.color[..., 0], n)
  z = depth_lib.project_depth(image_ops.block_center(r0.depth[..., None], ssaa), near, far)
  mask = image_ops.block_count(r0.alpha, ssaa)[..., None] > block_min
  mask &= depth_lib.depth_edge(z, atol, rtol)
  maskf = mask.astype(jnp.float32)
  return Warped(color=color * maskf, depth=z * maskf, mask=maskf)
