"""Rendering a stack of RGBD views into one target camera (reference 6.4, 7, 11.2d).

Every view becomes a grid mesh (its own depth, camera, padding, flags and
normals) and is rasterised into the target camera. What each sample sees is
returned per view (`shared_zbuffer=False`: the authors' aggregation, where
every view has its own depth buffer and views never occlude each other) or
as the front-most fragment over all views (`shared_zbuffer=True`: one
z-buffer shared by all meshes, the physically occluding composite).

Both come from the same per-view rasterisation: the front-most fragment of a
union of meshes is the nearest of the per-view front-most fragments, so the
shared z-buffer is an exact depth comparison across views (ties go to the
lower view index, as drawing the views in order with a 'less' test would).
The stack has a fixed size; `valid` switches views off without changing
shapes, so a sampler can fill the stack one view at a time under `jit`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax import lax

from ivid_jax.geometry import cameras
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import fusion_barrier
from ivid_jax.geometry import mesh as mesh_lib
from ivid_jax.geometry import raster
from ivid_jax.geometry import raster_kernel
from ivid_jax.geometry import warp

# The authors' AggregationRenderer clip planes (reference 6.4, 7).
RENDER_NEAR, RENDER_FAR = 0.01, 200.0

# Aggregation weights (reference 6.4): exp(-20 angle) floored at 1e-4; eroded
# texels x 1e-8; padding or all-edge fragments 1e-16.
_ANGLE_SHARPNESS = 20.0
_WEIGHT_FLOOR = 1e-4
_ERODED_FACTOR = 1e-8
_SHEET_WEIGHT = 1e-16


class ViewRender(NamedTuple):
  """What each target sample sees; [V, S, S, ...] per view or [S, S, ...] shared.

  Attributes:
    color: float32 [..., 3] nearest source texel in [0, 1] (0 for back faces and empty).
    depth: float32 [...] target camera-space depth (clip w), `far` where empty.
    weight: float32 [...] the authors' aggregation weight of the fragment: how
      head-on its source camera saw the surface (1e-4..1), x 1e-8 on eroded
      texels, 1e-16 on padding or discontinuity sheets, 0 for back faces and
      empty samples.
    view: int32 [...] index of the view the fragment belongs to, -1 where empty.
  """
  color: Array
  depth: Array
  weight: Array
  view: Array

  @property
  def covered(self) -> Array:
    return self.view >= 0


# acos on [0, 1] as sqrt(1 - x) times a degree-7 polynomial (Abramowitz & Stegun 4.4.46,
# |error| <= 2e-8 rad): float32 accurate, and it vectorises, where XLA's CPU acos does not
# (it was 60% of the fusion renderer's time).
_ACOS_COEFFS = (1.5707963050, -0.2145988016, 0.0889789874, -0.0501743046, 0.0308918810,
                -0.0170881256, 0.0066700901, -0.0012624911)


def acos01(x: Array) -> Array:
  """arccos(x) for x in [0, 1] (radians)."""
  poly = jnp.zeros_like(x)
  for c in _ACOS_COEFFS[::-1]:
    poly = poly * x + c
  return jnp.sqrt(1.0 - x) * poly


def aggregation_weight(normal: Array, position: Array, source_center: Array,
                       flags: Array, front: Array) -> Array:
  """The per-fragment weight of the authors' aggregation shader.

  Args:
    normal: float [..., 3] interpolated world normal (renormalised here).
    position: float [..., 3] interpolated world position.
    source_center: float [..., 3] camera centre of the fragment's source view.
    flags: float [..., 3] interpolated (edge, padding, eroded) flags.
    front: bool [...] front-facing.

  Returns:
    float32 [...]; 0 for back faces.
  """
  # Component-wise: reductions over a minor axis of 3 do not vectorise on XLA's CPU backend.
  n = [normal[..., i] for i in range(3)]
  d = [source_center[..., i] - position[..., i] for i in range(3)]
  n_len = jnp.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2])
  d_len = jnp.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
  dot = n[0] * d[0] + n[1] * d[1] + n[2] * d[2]
  cos = jnp.clip(dot / (jnp.maximum(n_len, 1e-12) * jnp.maximum(d_len, 1e-12)), 0.0, 1.0)
  w = jnp.exp(jnp.maximum(-_ANGLE_SHARPNESS * acos01(cos), -50.0))
  w = jnp.maximum(w, _WEIGHT_FLOOR)
  w = jnp.where(flags[..., 2] >= 0.999, w * _ERODED_FACTOR, w)
  sheet = (flags[..., 1] > 0.001) | (flags[..., 0] > 0.999)
  w = jnp.where(sheet, _SHEET_WEIGHT, w)
  return jnp.where(front, jnp.maximum(w, _SHEET_WEIGHT), 0.0)


def view_meshes(rgbds: Array, modelviews: Array, *, fov: float = 45.0,
                near: float = depth_lib.SAMPLE_NEAR, far: float = depth_lib.SAMPLE_FAR,
                padding: mesh_lib.Padding = 'frustum', atol: float = 0.03, rtol: float = 0.03,
                erode_rgb: int | None = 3) -> mesh_lib.GridMesh:
  """The aggregation meshes of a stack of views: flags and world normals (reference 6.3, 7).

  Args:
    rgbds: float [V, N, N, 4]: colour in [0, 1], z-buffer depth (near/far) in channel 3.
    modelviews: float [V, 4, 4].
    fov, near, far, padding, atol, rtol, erode_rgb: as `render_views`.

  Returns:
    GridMesh with a leading axis V and normals.
  """
  d = depth_lib.linearize_depth(jnp.asarray(rgbds, jnp.float32)[..., 3], near, far)
  return mesh_lib.batched_depth_to_mesh(d, jnp.asarray(modelviews, jnp.float32), fov=fov,
                                        padding=padding, atol=atol, rtol=rtol,
                                        erode_rgb=erode_rgb, normals=True)


def default_window(size: int, source_size: int) -> int:
  """Candidate window of the rasteriser for grid meshes drawn at `size` from `source_size` views.

  A grid quad spans about k = size / source_size samples at unit
  magnification, so its triangles have at most k + 1 candidate sample centres
  per axis (4 at the aggregation's 3x, 6 at fusion's 5x); larger faces
  (sheets, padding, magnified surfaces) take the rasteriser's exact large-face
  path, and a wider window only adds candidates to every face.
  """
  return max(4, -(-size // source_size) + 1)


def _interpolate_grid_attributes(meshes: mesh_lib.GridMesh, frags: raster.Fragments,
                                 verts: list[Array], texture_size: int
                                 ) -> tuple[Array, Array, Array]:
  """Perspective-correct uv, flags and normals of grid-mesh fragments with few gathers.

  `raster.interpolate` gathers three corners per channel (33 gathers per
  sample for these 11 channels); here, given the corners' vertex ids `verts`
  (flat, batch-offset), the per-sample gathers are one packed texel code per
  corner (grid uv are half-integer texel coordinates), one per-face word
  holding the nine corner flags, and the normals: 13. The arithmetic is the
  same interpolation.

  Returns:
    uv float32 [V, S, S, 2], flags float32 [V, S, S, 3], normal float32 [V, S, S, 3].
  """
  num_views, num_verts = meshes.positions.shape[0], meshes.positions.shape[1]
  num_faces = meshes.faces.shape[1]
  gface = (jnp.maximum(frags.face, 0)
           + (jnp.arange(num_views, dtype=jnp.int32) * num_faces)[:, None, None])
  flat_faces = (meshes.faces + (jnp.arange(num_views, dtype=jnp.int32) * num_verts)[:, None, None]
                ).reshape(-1, 3)
  lam = [frags.bary[..., k] for k in range(3)]
  interp = lambda table: sum(lam[k] * table[verts[k]] for k in range(3))
  # Texel coordinates u N, v N are half-integers below 2^9: two of them in one int32.
  texel = jnp.round(2.0 * texture_size * meshes.uv.reshape(-1, 2)).astype(jnp.int32)
  code = texel[:, 0] + (texel[:, 1] << 10)
  corner = [code[verts[k]] for k in range(3)]
  u = sum(lam[k] * (corner[k] & 1023).astype(jnp.float32) for k in range(3))
  v = sum(lam[k] * (corner[k] >> 10).astype(jnp.float32) for k in range(3))
  uv = jnp.stack([u, v], -1) / (2.0 * texture_size)
  # Per face: bit 3 k + f is flag f of corner k.
  vflags = meshes.flags.reshape(-1, 3) > 0.5
  face_bits = sum((vflags[flat_faces[:, k], f].astype(jnp.int32) << (3 * k + f))
                  for k in range(3) for f in range(3))
  word = face_bits[gface]
  flags = jnp.stack([sum(lam[k] * ((word >> (3 * k + f)) & 1).astype(jnp.float32)
                         for k in range(3)) for f in range(3)], -1)
  normals = meshes.normals.reshape(-1, 3)
  normal = jnp.stack([interp(normals[:, c]) for c in range(3)], -1)
  covered = frags.covered[..., None]
  return (jnp.where(covered, uv, 0.0), jnp.where(covered, flags, 0.0),
          jnp.where(covered, normal, 0.0))


def _sample_positions(depth: Array, target: Array, size: int, fov: float) -> Array:
  """World position of the fragment at each sample: the sample's ray at camera depth `depth`.

  Equal to the perspective-correct interpolation of the vertex positions (the
  fragment lies on its face's plane, on the ray through the sample centre).
  depth [V, S, S], target [V, 4, 4] -> float32 [V, S, S, 3].
  """
  t = math.tan(math.radians(fov) / 2)
  c = (jnp.arange(size, dtype=jnp.float32) + 0.5) * (2.0 / size) - 1.0
  x = c[None, None, :] * t * depth
  y = -c[None, :, None] * t * depth
  # world = R^T (cam - t), component-wise (contractions over a minor axis of 3 are slow on CPU).
  rel = [x - target[:, 0, 3, None, None], y - target[:, 1, 3, None, None],
         -depth - target[:, 2, 3, None, None]]
  return jnp.stack([sum(target[:, j, i, None, None] * rel[j] for j in range(3))
                    for i in range(3)], -1)


def rasterize_views(meshes: mesh_lib.GridMesh, textures: Array, modelviews: Array,
                    target_modelviews: Array, *, valid: Array | None = None, size: int = 384,
                    fov: float = 45.0, render_near: float = RENDER_NEAR,
                    render_far: float = RENDER_FAR, window: int | None = None) -> ViewRender:
  """Rasterises each view's mesh into its own target camera with the aggregation weights.

  Every view has its own depth buffer (views never occlude each other).

  Args:
    meshes: GridMesh [V, ...] from `view_meshes`.
    textures: float [V, N, N, 3] colour of the views.
    modelviews: float [V, 4, 4] the views' cameras (the weights' source centres).
    target_modelviews: float [V, 4, 4] or [4, 4] the camera each view is drawn into.
    valid: optional bool [V]; invalid views draw nothing.
    size: output side in samples (static).
    fov, render_near, render_far: the target projection.
    window: the rasteriser's small-face window (static); default `default_window`.

  Returns:
    ViewRender [V, size, size].
  """
  num_views = textures.shape[0]
  if valid is None:
    valid = jnp.ones((num_views,), bool)
  if window is None:
    window = default_window(size, textures.shape[1])
  target = jnp.broadcast_to(jnp.asarray(target_modelviews, jnp.float32), (num_views, 4, 4))
  # Invalid views: NaN positions make every face undrawable.
  positions = jnp.where(valid[:, None, None], meshes.positions, jnp.nan)
  clip = raster.project(positions, target, cameras.perspective(fov, render_near, render_far))
  # Back-facing padding triangles are discarded (the shader's `discard`).
  face_padding = jnp.any(jnp.take_along_axis(
      meshes.flags[..., 1], meshes.faces.reshape(num_views, -1), axis=1).reshape(
          meshes.faces.shape) > 0, axis=-1)
  face = raster.rasterize(clip, meshes.faces, height=size, width=size, near=render_near,
                          far=render_far, cull_back=face_padding, window=window,
                          resolve=False).face
  # Each stage is computed once into buffers: XLA would otherwise fuse the gathers and
  # the barycentric arithmetic into every consumer and redo them there.
  verts = fusion_barrier.materialize(
      raster.face_vertex_ids(meshes.faces, face, meshes.positions.shape[1]))
  frags = fusion_barrier.materialize(
      raster.resolve_fragments(clip, meshes.faces, face, far=render_far, vertex_ids=verts))
  uv, flags, normal = _interpolate_grid_attributes(meshes, frags, verts, textures.shape[1])
  uv, flags, normal, depth = fusion_barrier.materialize((uv, flags, normal, frags.depth))
  position = _sample_positions(depth, target, size, fov)
  color = warp.texture_nearest(textures, uv)
  color = jnp.where(frags.front[..., None], color, 0.0)
  centers = cameras.camera_center(jnp.asarray(modelviews, jnp.float32))[:, None, None, :]
  weight = aggregation_weight(normal, position, centers, flags, frags.front)
  view = jnp.where(frags.covered, jnp.arange(num_views, dtype=jnp.int32)[:, None, None], -1)
  return ViewRender(color=color, depth=frags.depth, weight=weight, view=view)


@functools.partial(jax.jit, static_argnames=(
    'size', 'fov', 'near', 'far', 'padding', 'atol', 'rtol', 'erode_rgb', 'render_near',
    'render_far', 'shared_zbuffer', 'window'))
def render_views(rgbds: Array, modelviews: Array, target_modelview: Array, *,
                 valid: Array | None = None, size: int = 384, fov: float = 45.0,
                 near: float = depth_lib.SAMPLE_NEAR, far: float = depth_lib.SAMPLE_FAR,
                 padding: mesh_lib.Padding = 'frustum', atol: float = 0.03, rtol: float = 0.03,
                 erode_rgb: int | None = 3, render_near: float = RENDER_NEAR,
                 render_far: float = RENDER_FAR, shared_zbuffer: bool = True,
                 window: int | None = None) -> ViewRender:
  """Rasterises a fixed-size stack of RGBD views into one target camera.

  Args:
    rgbds: float [V, N, N, 4]: colour in [0, 1], z-buffer depth (near/far) in channel 3.
    modelviews: float [V, 4, 4] world-to-camera matrices of the views.
    target_modelview: float [4, 4] camera to render from.
    valid: optional bool [V]; invalid views draw nothing.
    size: output side in samples (static; the authors use 3 x 128 for the
      conditioning and 5 x 128 for free-view rendering).
    fov: field of view, degrees (views and target).
    near, far: z-buffer encoding of the input depth.
    padding, atol, rtol, erode_rgb: mesh construction (reference 2.3); the
      sampler's defaults: frustum walls, 0.03 tolerances, 7 x 7 erosion.
    render_near, render_far: the target projection's clip planes.
    shared_zbuffer: one depth buffer for all views (True) or one per view.
    window: the rasteriser's small-face window (static; default `default_window`).

  Returns:
    ViewRender [S, S] if shared_zbuffer else [V, S, S].
  """
  rgbds = jnp.asarray(rgbds, jnp.float32)
  if rgbds.ndim != 4 or rgbds.shape[-1] != 4:
    raise ValueError(f'rgbds must be [V, N, N, 4], got {rgbds.shape}')
  num_views = rgbds.shape[0]
  modelviews = jnp.asarray(modelviews, jnp.float32)
  if modelviews.shape != (num_views, 4, 4):
    raise ValueError(f'modelviews must be [{num_views}, 4, 4], got {modelviews.shape}')
  if valid is None:
    valid = jnp.ones((num_views,), bool)
  valid = jnp.asarray(valid, bool)
  if valid.shape != (num_views,):
    raise ValueError(f'valid must be [{num_views}], got {valid.shape}')
  meshes = view_meshes(rgbds, modelviews, fov=fov, near=near, far=far, padding=padding,
                       atol=atol, rtol=rtol, erode_rgb=erode_rgb)
  per_view = rasterize_views(meshes, rgbds[..., :3], modelviews, target_modelview, valid=valid,
                             size=size, fov=fov, render_near=render_near, render_far=render_far,
                             window=window)
  if not shared_zbuffer:
    return per_view
  # argmin returns the first minimum: equal depths go to the earlier view.
  covered = per_view.covered
  nearest = jnp.argmin(jnp.where(covered, per_view.depth, jnp.inf), axis=0)
  pick = lambda a: jnp.take_along_axis(
      a, nearest.reshape((1,) + nearest.shape + (1,) * (a.ndim - 3)), axis=0)[0]
  return jax.tree.map(pick, per_view)


# ---------------------------------------------------------------------------------------------
# The authors' accumulation over views (aggregation.csh), in order-independent form.

# Fragment classes by weight (aggregation.csh): above 1e-14 a fragment counts for depth
# (normal and eroded texels), above 1e-6 for colour (not eroded); 0 < w <= 1e-14 are
# sheets, walls and padding ("low").
_DEPTH_VALID = 1e-14
_COLOR_VALID = 1e-6


class Accumulator(NamedTuple):
  """Per-sample state of the accumulation over views, [...] the sample shape.

  Attributes:
    color: float32 [..., 3] sum of w rgb over every fragment with w > 0.
    weight: float32 [...] sum of w.
    disparity: float32 [...] sum of 1 / D over depth-valid fragments (w > 1e-14).
    depth_count: int32 [...] number of depth-valid fragments (the shader's n_depth).
    color_count: int32 [...] number of colour-valid fragments (w > 1e-6, n_colour).
    low_depth: float32 [...] D of the farthest low-weight fragment, 0 if none.
    low_color: float32 [..., 3] its colour.
  """
  color: Array
  weight: Array
  disparity: Array
  depth_count: Array
  color_count: Array
  low_depth: Array
  low_color: Array


class Accumulated(NamedTuple):
  """The accumulation read back: what the authors' AggregationRenderer returns.

  Attributes:
    color: float32 [..., 3] sum(w rgb) / sum(w) where some fragment was valid,
      else the farthest low-weight fragment's colour, else 0.
    depth: float32 [...] linear depth: the harmonic mean of D over depth-valid
      fragments (their mean disparity, as the mean of hardware depth), else the
      farthest low-weight fragment's D, else `render_near` (a cleared read-back).
    mask_depth: bool [...] n_depth >= 1.
    mask_color: bool [...] n_colour >= 1.
  """
  color: Array
  depth: Array
  mask_depth: Array
  mask_color: Array


def empty_accumulator(shape: tuple[int, ...]) -> Accumulator:
  """The cleared state (clear.csh) for samples of `shape`."""
  zeros = jnp.zeros(shape, jnp.float32)
  count = jnp.zeros(shape, jnp.int32)
  return Accumulator(color=jnp.zeros(shape + (3,), jnp.float32), weight=zeros, disparity=zeros,
                     depth_count=count, color_count=count, low_depth=zeros,
                     low_color=jnp.zeros(shape + (3,), jnp.float32))


def accumulate(acc: Accumulator, frag: ViewRender) -> Accumulator:
  """Adds one view's front-most fragments (ViewRender [...]) to the accumulator.

  The order-independent form of aggregation.csh (reference 6.4, 11.2d): sums
  and counts add up; among the low-weight fragments (sheets, frustum walls,
  padding) only the farthest is kept, and it matters only where no view has a
  depth-valid fragment. The shader also adds low fragments met after a valid
  one with depth weight 1e-8: a relative 1e-8 on the depth, not reproduced.
  Ties keep the earlier view, as the shader's strict comparison does.
  """
  w = frag.weight
  valid = w > _DEPTH_VALID
  low = (w > 0) & ~valid
  farther = low & (frag.depth > acc.low_depth)
  safe_depth = jnp.where(valid, frag.depth, 1.0)
  return Accumulator(
      color=acc.color + w[..., None] * frag.color,
      weight=acc.weight + w,
      disparity=acc.disparity + jnp.where(valid, 1.0 / safe_depth, 0.0),
      depth_count=acc.depth_count + valid.astype(jnp.int32),
      color_count=acc.color_count + (w > _COLOR_VALID).astype(jnp.int32),
      low_depth=jnp.where(farther, frag.depth, acc.low_depth),
      low_color=jnp.where(farther[..., None], frag.color, acc.low_color),
  )


def resolve(acc: Accumulator, render_near: float = RENDER_NEAR) -> Accumulated:
  """Reads an accumulator back as the authors' renderer does (reference 6.4)."""
  has_valid = acc.depth_count > 0
  has_low = acc.low_depth > 0
  color = jnp.where(has_valid[..., None],
                    acc.color / jnp.maximum(acc.weight, 1e-30)[..., None],
                    jnp.where(has_low[..., None], acc.low_color, 0.0))
  mean_disparity = acc.disparity / jnp.maximum(acc.depth_count, 1).astype(jnp.float32)
  depth = jnp.where(has_valid, 1.0 / jnp.where(has_valid, mean_disparity, 1.0),
                    jnp.where(has_low, acc.low_depth, render_near))
  return Accumulated(color=color, depth=depth, mask_depth=has_valid,
                     mask_color=acc.color_count > 0)


def accumulate_views(meshes: mesh_lib.GridMesh, textures: Array, modelviews: Array,
                     valid: Array, targets: Array, *, size: int, fov: float = 45.0,
                     render_near: float = RENDER_NEAR, render_far: float = RENDER_FAR,
                     kernel: str = 'jnp') -> Accumulated:
  """Every valid view drawn into each frame with its own z-buffer and accumulated.

  The authors' AggregationRenderer (reference 6.4, 7): the sampler's conditions
  and the exact fusion renderer are this with different meshes and sizes.

  Args:
    meshes: GridMesh [V, ...] from `view_meshes`.
    textures: float [V, N, N, 3] colour of the views.
    modelviews: float [V, 4, 4] the views' cameras (the weights' source centres).
    valid: bool [V]; the others cost nothing.
    targets: float [F, 4, 4] the frames' cameras.
    size: frame side in samples (static). fov: degrees.
    render_near, render_far: the frames' clip planes.
    kernel: 'jnp' (any backend) or 'cpu' (`raster_kernel.accumulate`: the same
      arithmetic in one XLA:CPU custom call; the angle weights' exp may differ in
      the last bits). Resolve 'auto' with `raster_kernel.resolve` first.

  Returns:
    Accumulated [F, size, size].
  """
  textures = jnp.asarray(textures, jnp.float32)
  modelviews = jnp.asarray(modelviews, jnp.float32)
  targets = jnp.asarray(targets, jnp.float32)
  if kernel == 'cpu':
    projection = cameras.perspective(fov, render_near, render_far)
    clip = jax.vmap(lambda t: raster.project(meshes.positions, t[None], projection))(targets)
    return Accumulated(*raster_kernel.accumulate(
        clip, targets, meshes.faces, meshes.normals, meshes.uv, meshes.flags, textures,
        modelviews, valid, size=size, fov=fov, near=render_near, far=render_far))
  if kernel != 'jnp':
    raise ValueError(f"kernel must be 'jnp' or 'cpu' here, got {kernel!r}")
  num_frames = targets.shape[0]
  # Valid views first (stable), then a loop whose trip count is their number.
  order = jnp.argsort(~valid, stable=True)

  def draw(i, acc):
    v = order[i]
    take = lambda a: jnp.broadcast_to(lax.dynamic_index_in_dim(a, v, keepdims=False),
                                      (num_frames,) + a.shape[1:])
    frags = rasterize_views(jax.tree.map(take, meshes), take(textures), take(modelviews),
                            targets, size=size, fov=fov, render_near=render_near,
                            render_far=render_far)
    return accumulate(acc, frags)

  acc = lax.fori_loop(0, jnp.sum(valid.astype(jnp.int32)), draw,
                      empty_accumulator((num_frames, size, size)))
  return resolve(acc, render_near)
