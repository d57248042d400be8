"""Procedural RGBD scenes with exact depth: a scene sampler and a jnp ray caster.

A scene is a fixed-size pytree of primitives (spheres, y-rotated boxes,
planes and an enclosing sky dome) with procedural solid textures, so that it
can be sampled, vmapped and ray cast under `jit` with static shapes. Unused
slots carry `valid = False`.

Conventions (those of `geometry.cameras`, reference 2.1):
- OpenGL camera axes: the camera looks down -z, +y up, +x right; a
  `modelview` is a float32 [4, 4] world-to-camera matrix; fov 45 degrees.
- Pixel (row i, col j) of an S x S image has its centre at
  u = (j + 0.5) / S, v = (i + 0.5) / S. Its ray in camera coordinates is
  ((u - 0.5) / f, (0.5 - v) / f, -1), f = 0.5 / tan(fov / 2): with this
  unnormalised direction the ray parameter t of a hit IS the linear depth D
  along the optical axis (not the distance along the ray).
- View 0 sits at (0, 0, 1) looking at the origin. Content is placed in its
  frustum at depths of about 0.6..3.5, a backdrop 4..7 away and a sky dome
  of radius 20 around everything, so every ray hits something.
- Textures are functions of the object-local 3D position and shading is
  Lambertian with one directional light: colours do not depend on the
  viewpoint, so every view of a scene is an exact novel view of view 0.
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

NUM_SPHERES = 6
NUM_BOXES = 6
NUM_PLANES = 4  # ground, backdrop, left wall, right wall
NUM_PRIMITIVES = NUM_SPHERES + NUM_BOXES + NUM_PLANES + 1  # + the sky dome
NUM_NOISE_WAVES = 3

CLASS_NAMES = ('spheres', 'boxes', 'mixed', 'tabletop', 'room')
NUM_CLASSES = len(CLASS_NAMES)


def class_label(name: str, num_classes: int | None) -> int:
  """A class name of synthetic_rgbd -> its label, for networks of `num_classes` classes.

  Raises:
    ValueError: an unknown name, or networks that are not synthetic_rgbd's (give labels).
  """
  if name not in CLASS_NAMES:
    raise ValueError(f'unknown class {name!r}; synthetic_rgbd has {", ".join(CLASS_NAMES)} '
                     '(or give labels)')
  if num_classes != NUM_CLASSES:
    raise ValueError(f"class names are synthetic_rgbd's, but the networks have {num_classes} "
                     'classes: give labels')
  return CLASS_NAMES.index(name)

TEX_SOLID, TEX_CHECKER, TEX_STRIPES, TEX_NOISE = range(4)
_TEX_PROBS = (0.1, 0.35, 0.25, 0.3)

FOV = 45.0
DOME_RADIUS = 20.0
_T_EPS = 1e-4
_TAN_HALF_FOV = math.tan(math.radians(FOV) / 2)
# Every orbit camera (radius 1) sees only geometry that is either within this
# distance of the origin or behind the plane z = _SAFE_Z, so no camera of the
# view set ends up inside or right against an object.
_SAFE_RADIUS = 0.45
_SAFE_Z = -0.2

# Views stored per scene: the authors' 3x9 evaluation set in their generation
# order (yaw-major, reference 6.2; index 0 is view 0) and wider views.
_YAWS_3X9 = (0.0, 0.15, -0.15, 0.30, -0.30, 0.45, -0.45, 0.60, -0.60)
_PITCHES_3X9 = (0.0, 0.15, -0.15)
_WIDE = ((0.9, 0.0), (-0.9, 0.0), (1.2, 0.0), (-1.2, 0.0), (0.0, 0.3), (0.0, -0.3))
VIEW_YAWS = tuple(y for y in _YAWS_3X9 for _ in _PITCHES_3X9) + tuple(y for y, _ in _WIDE)
VIEW_PITCHES = tuple(p for _ in _YAWS_3X9 for p in _PITCHES_3X9) + tuple(p for _, p in _WIDE)
NUM_VIEWS = len(VIEW_YAWS)  # 27 + 6 = 33
NUM_VIEWS_3X9 = 27


class Material(NamedTuple):
  """Procedural solid textures, one per primitive (leading axis P).

  albedo = color_a (1 - m) + color_b m with m in [0, 1] from the pattern:
  solid m = 0; checker and stripes m in {0, 1} on cells of 1 / freq world
  units; noise m = a sum of sinusoids.

  Attributes:
    kind: int32 [P] TEX_SOLID, TEX_CHECKER, TEX_STRIPES or TEX_NOISE.
    color_a, color_b: float32 [P, 3] in [0, 1].
    freq: float32 [P] cycles per world unit.
    offset: float32 [P, 3] pattern phase, in cells.
    direction: float32 [P, 3] unit normal of the stripes.
    wave: float32 [P, K, 3] noise wave vectors (in cells).
    phase: float32 [P, K] noise phases, radians.
  """
  kind: Array
  color_a: Array
  color_b: Array
  freq: Array
  offset: Array
  direction: Array
  wave: Array
  phase: Array


class Scene(NamedTuple):
  """One procedural scene. Primitive slots are ordered spheres, boxes, planes, dome.

  Attributes:
    sphere_center: float32 [NS, 3]; sphere_radius: [NS]; sphere_valid: bool [NS].
    box_center: float32 [NB, 3]; box_half: [NB, 3] half extents in the box frame;
      box_yaw: [NB] rotation about +y, radians; box_valid: bool [NB].
    plane_normal: float32 [NP, 3] unit; plane_offset: [NP] (points p with
      n . p = offset); plane_valid: bool [NP].
    material: Material with P = NUM_PRIMITIVES.
    light_dir: float32 [3] unit vector towards the light.
    ambient: float32 [] ambient fraction of the shading.
    label: int32 [] scene class (index into CLASS_NAMES).
  """
  sphere_center: Array
  sphere_radius: Array
  sphere_valid: Array
  box_center: Array
  box_half: Array
  box_yaw: Array
  box_valid: Array
  plane_normal: Array
  plane_offset: Array
  plane_valid: Array
  material: Material
  light_dir: Array
  ambient: Array
  label: Array


class Render(NamedTuple):
  """A ray-cast view.

  Attributes:
    rgb: float32 [..., S, S, 3] in [0, 1] (box-filtered over the SSAA samples).
    depth: float32 [..., S, S] linear depth D along the optical axis at the pixel centre.
    zbuffer: float32 [..., S, S, 1] D encoded with near 0.5 / far 100 (the data's channel).
  """
  rgb: Array
  depth: Array
  zbuffer: Array


# ----------------------------------------------------------------------------
# Scene sampling.


def _unit(v: Array) -> Array:
  return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def _sample_materials(key: Array, scale: Array, freq_range=(1.5, 4.0)) -> Material:
  """Random materials for objects of typical size `scale` [P] (world units)."""
  n = scale.shape[0]
  ks = jax.random.split(key, 8)
  kind = jax.random.choice(ks[0], 4, (n,), p=jnp.array(_TEX_PROBS))
  color_a = jax.random.uniform(ks[1], (n, 3), minval=0.05, maxval=0.95)
  color_b = jax.random.uniform(ks[2], (n, 3), minval=0.05, maxval=0.95)
  freq = jax.random.uniform(ks[3], (n,), minval=freq_range[0], maxval=freq_range[1]) / scale
  offset = jax.random.uniform(ks[4], (n, 3))
  direction = _unit(jax.random.normal(ks[5], (n, 3)))
  wave = _unit(jax.random.normal(ks[6], (n, NUM_NOISE_WAVES, 3))) * jax.random.uniform(
      ks[7], (n, NUM_NOISE_WAVES, 1), minval=2.0, maxval=6.0)
  phase = 2 * jnp.pi * jax.random.uniform(jax.random.fold_in(key, 1), (n, NUM_NOISE_WAVES))
  return Material(kind.astype(jnp.int32), color_a, color_b, freq, offset, direction, wave, phase)


def _frustum_points(key: Array, n: int, depth_range: tuple[float, float],
                    spread: float = 0.7) -> Array:
  """Points [n, 3] inside view 0's frustum at depths U(depth_range), |x|, |y| <= spread."""
  k_d, k_xy = jax.random.split(key)
  d = jax.random.uniform(k_d, (n,), minval=depth_range[0], maxval=depth_range[1])
  xy = jax.random.uniform(k_xy, (n, 2), minval=-spread, maxval=spread) * _TAN_HALF_FOV * d[:, None]
  return jnp.concatenate([xy, (1.0 - d)[:, None]], axis=-1)


def _safe_radius(center: Array) -> Array:
  """Largest bounding radius [n] keeping an object at `center` [n, 3] clear of the cameras."""
  return jnp.maximum(_SAFE_Z - center[:, 2], _SAFE_RADIUS - jnp.linalg.norm(center, axis=-1))


def _count_valid(key: Array, n_slots: int, lo: int, hi: int) -> Array:
  """bool [n_slots]: the first U{lo..hi} slots are valid."""
  count = jax.random.randint(key, (), lo, hi + 1)
  return jnp.arange(n_slots) < count


def _spheres(key: Array, ground_y: Array, lo: int, hi: int, depth_range=(0.8, 3.2)):
  k_c, k_r, k_n = jax.random.split(key, 3)
  center = _frustum_points(k_c, NUM_SPHERES, depth_range)
  depth = 1.0 - center[:, 2]
  radius = jax.random.uniform(k_r, (NUM_SPHERES,), minval=0.07, maxval=0.25) * jnp.sqrt(depth)
  # Rest on or float above the ground, then shrink to keep clear of the cameras.
  center = center.at[:, 1].set(jnp.maximum(center[:, 1], ground_y + radius))
  radius = jnp.maximum(jnp.minimum(radius, _safe_radius(center)), 0.03)
  return center, radius, _count_valid(k_n, NUM_SPHERES, lo, hi)


def _boxes(key: Array, ground_y: Array, lo: int, hi: int, depth_range=(0.8, 3.2)):
  k_c, k_h, k_y, k_a, k_n = jax.random.split(key, 5)
  center = _frustum_points(k_c, NUM_BOXES, depth_range)
  depth = 1.0 - center[:, 2]
  half = jax.random.uniform(k_h, (NUM_BOXES, 3), minval=0.05, maxval=0.22) * jnp.sqrt(depth)[:, None]
  yaw = jax.random.uniform(k_y, (NUM_BOXES,), minval=-0.8, maxval=0.8)
  yaw = jnp.where(jax.random.bernoulli(k_a, 0.3, (NUM_BOXES,)), 0.0, yaw)  # some axis-aligned
  center = center.at[:, 1].set(jnp.maximum(center[:, 1], ground_y + half[:, 1]))
  bound = jnp.linalg.norm(half, axis=-1)
  shrink = jnp.clip(_safe_radius(center) / bound, 0.15, 1.0)
  return center, half * shrink[:, None], yaw, _count_valid(k_n, NUM_BOXES, lo, hi)


def _environment(key: Array, label: int) -> dict:
  """Ground, backdrop, light and the materials of all primitives."""
  ks = jax.random.split(key, 6)
  ground_y = -jax.random.uniform(ks[0], (), minval=0.45, maxval=0.9)
  backdrop_z = -jax.random.uniform(ks[1], (), minval=3.0, maxval=6.0)
  light = _unit(jnp.array([0.0, 1.0, 0.6]) + 0.6 * jax.random.normal(ks[2], (3,)))
  light = light.at[1].set(jnp.abs(light[1]) + 0.2)
  ambient = jax.random.uniform(ks[3], (), minval=0.25, maxval=0.5)
  # Texture scale per slot: objects ~0.2 units, planes ~1, the dome ~6.
  scale = jnp.array([0.2] * (NUM_SPHERES + NUM_BOXES) + [1.0] * NUM_PLANES + [6.0])
  material = _sample_materials(ks[4], scale)
  # The sky dome is always a soft noise between two colours.
  material = material._replace(kind=material.kind.at[-1].set(TEX_NOISE))
  planes_n = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
  planes_k = jnp.stack([ground_y, backdrop_z, jnp.float32(-10.0), jnp.float32(-10.0)])
  return dict(ground_y=ground_y, plane_normal=planes_n, plane_offset=planes_k,
              plane_valid=jnp.array([True, True, False, False]), material=material,
              light_dir=light, ambient=ambient, label=jnp.int32(label))


def _assemble(env: dict, spheres, boxes) -> Scene:
  s_c, s_r, s_v = spheres
  b_c, b_h, b_y, b_v = boxes
  return Scene(sphere_center=s_c, sphere_radius=s_r, sphere_valid=s_v, box_center=b_c,
               box_half=b_h, box_yaw=b_y, box_valid=b_v, plane_normal=env['plane_normal'],
               plane_offset=env['plane_offset'], plane_valid=env['plane_valid'],
               material=env['material'], light_dir=env['light_dir'], ambient=env['ambient'],
               label=env['label'])


def _scene_spheres(key: Array) -> Scene:
  k_env, k_s, k_b = jax.random.split(key, 3)
  env = _environment(k_env, 0)
  return _assemble(env, _spheres(k_s, env['ground_y'], 2, 6), _boxes(k_b, env['ground_y'], 0, 0))


def _scene_boxes(key: Array) -> Scene:
  k_env, k_s, k_b = jax.random.split(key, 3)
  env = _environment(k_env, 1)
  return _assemble(env, _spheres(k_s, env['ground_y'], 0, 0), _boxes(k_b, env['ground_y'], 2, 6))


def _scene_mixed(key: Array) -> Scene:
  k_env, k_s, k_b = jax.random.split(key, 3)
  env = _environment(k_env, 2)
  return _assemble(env, _spheres(k_s, env['ground_y'], 1, 3), _boxes(k_b, env['ground_y'], 1, 3))


def _scene_tabletop(key: Array) -> Scene:
  """A table (slab on a pedestal, boxes 0 and 1) with small objects resting on it."""
  ks = jax.random.split(key, 12)
  env = _environment(ks[0], 3)
  ground_y = env['ground_y']
  u = lambda k, lo, hi, shape=(): jax.random.uniform(k, shape, minval=lo, maxval=hi)
  table_depth = u(ks[1], 1.7, 2.6)
  tx, tz = u(ks[2], -0.25, 0.25) * table_depth, 1.0 - table_depth
  top = jnp.maximum(u(ks[3], -0.4, -0.1), ground_y + 0.15)
  hx, hz, thick = u(ks[4], 0.45, 0.8), u(ks[5], 0.25, 0.45), u(ks[6], 0.02, 0.05)
  pedestal = u(ks[7], 0.05, 0.12)
  slab_c = jnp.stack([tx, top - thick, tz])
  ped_c = jnp.stack([tx, (ground_y + top - 2 * thick) / 2, tz])
  ped_h = jnp.stack([pedestal, (top - 2 * thick - ground_y) / 2, pedestal])

  # Small objects on the table top, inside its footprint.
  radius = u(ks[8], 0.04, 0.12, (NUM_SPHERES,))
  fx = u(ks[9], -1.0, 1.0, (NUM_SPHERES, 2))
  s_c = jnp.stack([tx + fx[:, 0] * (hx - radius), top + radius, tz + fx[:, 1] * (hz - radius)], -1)
  s_v = _count_valid(ks[10], NUM_SPHERES, 1, 3)

  k_h, k_p, k_y, k_n = jax.random.split(ks[11], 4)
  half = u(k_h, 0.03, 0.1, (NUM_BOXES, 3))
  fb = u(k_p, -1.0, 1.0, (NUM_BOXES, 2))
  bound = jnp.linalg.norm(half[:, ::2], axis=-1)
  b_c = jnp.stack([tx + fb[:, 0] * (hx - bound), top + half[:, 1], tz + fb[:, 1] * (hz - bound)], -1)
  b_y = u(k_y, -0.8, 0.8, (NUM_BOXES,))
  b_v = jnp.arange(NUM_BOXES) < 2 + jax.random.randint(k_n, (), 0, 3)  # table + 0..2 objects
  b_c = b_c.at[0].set(slab_c).at[1].set(ped_c)
  half = half.at[0].set(jnp.stack([hx, thick, hz])).at[1].set(ped_h)
  b_y = b_y.at[0].set(0.0).at[1].set(0.0)
  return _assemble(env, (s_c, radius, s_v), (b_c, half, b_y, b_v))


def _scene_room(key: Array) -> Scene:
  """Two textured walls meeting behind the objects replace the backdrop."""
  ks = jax.random.split(key, 6)
  env = _environment(ks[0], 4)
  corner = jax.random.uniform(ks[1], (), minval=2.6, maxval=4.5)
  a_left = jax.random.uniform(ks[2], (), minval=0.35, maxval=1.0)
  a_right = jax.random.uniform(ks[3], (), minval=0.35, maxval=1.0)
  # Inward normals (sin a, 0, cos a) of walls through (0, *, -corner); cameras
  # stay in front as corner * cos(a) > 1.
  n_left = jnp.stack([jnp.sin(a_left), 0.0, jnp.cos(a_left)])
  n_right = jnp.stack([-jnp.sin(a_right), 0.0, jnp.cos(a_right)])
  env['plane_normal'] = env['plane_normal'].at[2].set(n_left).at[3].set(n_right)
  env['plane_offset'] = env['plane_offset'].at[2].set(-corner * n_left[2]).at[3].set(
      -corner * n_right[2])
  env['plane_valid'] = jnp.array([True, False, True, True])
  g = env['ground_y']
  return _assemble(env, _spheres(ks[4], g, 1, 3, (0.8, 2.2)), _boxes(ks[5], g, 0, 2, (0.8, 2.2)))


_SCENE_FNS = (_scene_spheres, _scene_boxes, _scene_mixed, _scene_tabletop, _scene_room)


def sample_scene(key: Array, scene_class: Array | int) -> Scene:
  """Samples one scene of class `scene_class` (int or int32 [] in [0, NUM_CLASSES)).

  Pure and jit/vmap-able: under vmap every class is sampled and one selected.
  """
  scene_class = jnp.clip(jnp.asarray(scene_class, jnp.int32), 0, NUM_CLASSES - 1)
  return lax.switch(scene_class, _SCENE_FNS, key)


# ----------------------------------------------------------------------------
# Ray casting.


# Intersections work on [P, N] arrays, rays on the minor axis: XLA fuses each
# into one loop that vectorises over rays, several times faster on CPU than
# [N, P] arrays with a short minor axis. `d` is a tuple of [1, N] components.


def _hit_spheres(o: Array, d: tuple[Array, Array, Array], scene: Scene) -> Array:
  """t [NS, N] of the near intersection, inf on a miss."""
  oc = (o - scene.sphere_center)[:, :, None]  # [NS, 3, 1]
  a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
  b = d[0] * oc[:, 0] + d[1] * oc[:, 1] + d[2] * oc[:, 2]
  c = (jnp.sum(oc[..., 0] ** 2, -1) - scene.sphere_radius ** 2)[:, None]
  disc = b * b - a * c
  t = (-b - jnp.sqrt(jnp.maximum(disc, 0.0))) / a
  return jnp.where(scene.sphere_valid[:, None] & (disc >= 0) & (t > _T_EPS), t, jnp.inf)


def _hit_boxes(o: Array, d: tuple[Array, Array, Array], scene: Scene) -> Array:
  """t [NB, N] of the entry point (slab test in each box frame), inf on a miss."""
  c, s = jnp.cos(scene.box_yaw)[:, None], jnp.sin(scene.box_yaw)[:, None]
  oc = (o - scene.box_center)[:, :, None]  # [NB, 3, 1]
  # Box frame = R^T world, R the rotation about +y by box_yaw.
  o_l = (oc[:, 0] * c - oc[:, 2] * s, oc[:, 1], oc[:, 0] * s + oc[:, 2] * c)
  d_l = (d[0] * c - d[2] * s, jnp.broadcast_to(d[1], (c.shape[0], d[1].shape[1])),
         d[0] * s + d[2] * c)
  half = scene.box_half[:, :, None]
  t_in, t_out = -jnp.inf, jnp.inf
  for axis in range(3):
    inv = 1.0 / jnp.where(jnp.abs(d_l[axis]) < 1e-12, 1e-12, d_l[axis])
    t1 = (-half[:, axis] - o_l[axis]) * inv
    t2 = (half[:, axis] - o_l[axis]) * inv
    t_in = jnp.maximum(t_in, jnp.minimum(t1, t2))
    t_out = jnp.minimum(t_out, jnp.maximum(t1, t2))
  return jnp.where(scene.box_valid[:, None] & (t_in <= t_out) & (t_in > _T_EPS), t_in, jnp.inf)


def _hit_planes(o: Array, d: tuple[Array, Array, Array], scene: Scene) -> Array:
  """t [NP, N], inf on a miss."""
  n = scene.plane_normal[:, :, None]
  denom = n[:, 0] * d[0] + n[:, 1] * d[1] + n[:, 2] * d[2]
  safe = jnp.where(jnp.abs(denom) < 1e-9, 1e-9, denom)
  t = (scene.plane_offset - scene.plane_normal @ o)[:, None] / safe
  ok = scene.plane_valid[:, None] & (jnp.abs(denom) >= 1e-9) & (t > _T_EPS)
  return jnp.where(ok, t, jnp.inf)


def _hit_dome(o: Array, d: tuple[Array, Array, Array]) -> Array:
  """t [1, N] of the exit point of the dome sphere around the origin (rays start inside)."""
  a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
  b = d[0] * o[0] + d[1] * o[1] + d[2] * o[2]
  c = jnp.dot(o, o) - DOME_RADIUS ** 2
  return (-b + jnp.sqrt(jnp.maximum(b * b - a * c, 0.0))) / a


def _primitive_table(scene: Scene) -> Array:
  """float32 [P, 37]: each primitive's geometry and material in one row.

  Columns: group (0 sphere, 1 box, 2 plane, 3 dome), centre or plane normal
  (3), radius / half extents / plane offset (3), cos and sin of the yaw (2),
  then the material: kind, color_a (3), color_b (3), freq, offset (3),
  direction (3), wave (3 K), phase (K).
  """
  n_s, n_b, n_p = NUM_SPHERES, NUM_BOXES, NUM_PLANES
  group = jnp.repeat(jnp.arange(4, dtype=jnp.float32), jnp.array([n_s, n_b, n_p, 1]),
                     total_repeat_length=NUM_PRIMITIVES)
  pos = jnp.concatenate([scene.sphere_center, scene.box_center, scene.plane_normal,
                         jnp.zeros((1, 3))])
  ext = jnp.concatenate([jnp.repeat(scene.sphere_radius[:, None], 3, 1), scene.box_half,
                         jnp.pad(scene.plane_offset[:, None], ((0, 0), (0, 2))), jnp.ones((1, 3))])
  yaw = jnp.concatenate([jnp.zeros(n_s), scene.box_yaw, jnp.zeros(n_p + 1)])
  m = scene.material
  return jnp.concatenate([
      group[:, None], pos, ext, jnp.cos(yaw)[:, None], jnp.sin(yaw)[:, None],
      m.kind[:, None].astype(jnp.float32), m.color_a, m.color_b, m.freq[:, None], m.offset,
      m.direction, m.wave.reshape(-1, 3 * NUM_NOISE_WAVES), m.phase], axis=-1).astype(jnp.float32)


def _pattern(row: Array, q: tuple[Array, Array, Array]) -> Array:
  """Pattern value [N] in [0, 1] of per-ray material rows [37, N] at texture points q (3 x [N])."""
  kind = row[9]
  cells = [q[i] * row[16] + row[17 + i] for i in range(3)]
  checker = jnp.mod(jnp.floor(cells[0]) + jnp.floor(cells[1]) + jnp.floor(cells[2]), 2.0)
  stripes = jnp.mod(jnp.floor(sum(cells[i] * row[20 + i] for i in range(3))), 2.0)
  k = NUM_NOISE_WAVES
  waves = sum(jnp.sin(sum(cells[i] * row[23 + 3 * j + i] for i in range(3)) + row[23 + 3 * k + j])
              for j in range(k))
  noise = jnp.clip(0.5 + 0.75 * waves / k, 0.0, 1.0)
  return jnp.select([kind == TEX_CHECKER, kind == TEX_STRIPES, kind == TEX_NOISE],
                    [checker, stripes, noise], 0.0)


def _min_and_argmin(ts: Array) -> tuple[Array, Array]:
  """(min, first argmin) over axis 0 of [P, N] in one variadic reduction.

  One reduction reads `ts` once; separate min and argmin make XLA fuse (and
  so recompute) all the intersection tests into each of them.
  """
  iota = lax.broadcasted_iota(jnp.int32, ts.shape, 0)

  def pick(a, b):
    (ta, ia), (tb, ib) = a, b
    take_b = (tb < ta) | ((tb == ta) & (ib < ia))
    return jnp.where(take_b, tb, ta), jnp.where(take_b, ib, ia)

  return lax.reduce((ts, iota), (jnp.float32(jnp.inf), jnp.int32(ts.shape[0])), pick, (0,))


def trace(scene: Scene, origin: Array, dirs: Array) -> tuple[Array, Array]:
  """Casts rays and shades the nearest hit.

  Args:
    scene: one Scene.
    origin: float32 [3] common ray origin (the camera centre).
    dirs: float32 [N, 3] ray directions; t is in units of |dirs|.

  Returns:
    (rgb float32 [N, 3] in [0, 1], t float32 [N] of the nearest hit).
  """
  d = tuple(dirs[None, :, i] for i in range(3))
  ts = jnp.concatenate([_hit_spheres(origin, d, scene), _hit_boxes(origin, d, scene),
                        _hit_planes(origin, d, scene), _hit_dome(origin, d)], axis=0)
  t, idx = _min_and_argmin(ts)
  hit = jnp.isfinite(t)
  tt = jnp.where(hit, t, 0.0)
  p = [origin[i] + tt * d[i][0] for i in range(3)]
  # The hit primitive's row [37, N] by a one-hot matmul: exact (the table is
  # finite) and faster on CPU than per-ray gathers. Shading then works on
  # per-component [N] arrays, like the intersections.
  onehot = (idx[None, :] == jnp.arange(NUM_PRIMITIVES)[:, None]).astype(jnp.float32)
  row = jnp.dot(_primitive_table(scene).T, onehot, precision=lax.Precision.HIGHEST)
  group, cos, sin = row[0], row[7], row[8]
  pos, ext = row[1:4], row[4:7]

  rel = [p[i] - pos[i] for i in range(3)]
  # Sphere: outward normal, texture in the sphere frame.
  nrm_s = [r / ext[0] for r in rel]
  # Box: local = R^T (p - c); the face is the axis where |local| / half is largest.
  loc = [rel[0] * cos - rel[2] * sin, rel[1], rel[0] * sin + rel[2] * cos]
  ratio = [jnp.abs(loc[i]) / ext[i] for i in range(3)]
  on_x = (ratio[0] >= ratio[1]) & (ratio[0] >= ratio[2])
  on_y = ~on_x & (ratio[1] >= ratio[2])
  on_z = ~on_x & ~on_y
  nl = [jnp.where(on, jnp.sign(v), 0.0) for on, v in zip((on_x, on_y, on_z), loc)]
  nrm_b = [nl[0] * cos + nl[2] * sin, nl[1], -nl[0] * sin + nl[2] * cos]
  # Plane: normal facing the ray; texture in plane coordinates (tangents t1, t2).
  n = pos
  use_x = jnp.abs(n[1]) > 0.9  # helper axis x for horizontal planes, else y
  h = [jnp.where(use_x, 1.0, 0.0), jnp.where(use_x, 0.0, 1.0), jnp.zeros_like(t)]
  t1 = [n[1] * h[2] - n[2] * h[1], n[2] * h[0] - n[0] * h[2], n[0] * h[1] - n[1] * h[0]]
  norm1 = jnp.sqrt(t1[0] ** 2 + t1[1] ** 2 + t1[2] ** 2)
  t1 = [v / jnp.maximum(norm1, 1e-12) for v in t1]
  t2 = [n[1] * t1[2] - n[2] * t1[1], n[2] * t1[0] - n[0] * t1[2], n[0] * t1[1] - n[1] * t1[0]]
  tex_p = [sum(p[i] * t1[i] for i in range(3)), sum(p[i] * t2[i] for i in range(3)),
           jnp.zeros_like(t)]
  facing = -jnp.sign(sum(n[i] * d[i][0] for i in range(3)))
  nrm_p = [v * facing for v in n]

  sel = lambda a, b, c, e: jnp.select([group == 0, group == 1, group == 2], [a, b, c], e)
  q = [sel(rel[i], loc[i], tex_p[i], p[i]) for i in range(3)]
  nrm = [sel(nrm_s[i], nrm_b[i], nrm_p[i], 0.0) for i in range(3)]

  mix = _pattern(row, q)
  lambert = jnp.maximum(sum(nrm[i] * scene.light_dir[i] for i in range(3)), 0.0)
  shade = jnp.where(group == 3, 1.0, scene.ambient + (1.0 - scene.ambient) * lambert)  # dome is unlit
  rgb = [jnp.clip((row[10 + i] * (1.0 - mix) + row[13 + i] * mix) * shade, 0.0, 1.0)
         for i in range(3)]
  rgb = jnp.where(hit[:, None], jnp.stack(rgb, -1), 0.0)
  return rgb, t


def camera_rays(modelview: Array, n: int, fov: float = FOV) -> tuple[Array, Array]:
  """Pixel-centre rays of an n x n image: origin [3] and directions [n * n, 3] (row-major).

  Directions have camera-space z = -1, so the hit parameter is the linear depth.
  """
  f = cameras.focal_normalized(fov)
  c = (jnp.arange(n, dtype=jnp.float32) + 0.5) / n
  x = jnp.broadcast_to((c[None, :] - 0.5) / f, (n, n))
  y = jnp.broadcast_to((0.5 - c[:, None]) / f, (n, n))
  d_cam = jnp.stack([x, y, -jnp.ones_like(x)], -1).reshape(-1, 3)
  modelview = jnp.asarray(modelview, jnp.float32)
  # world-to-camera rotation R: d_world = R^T d_cam, i.e. d_cam @ R for rows.
  return cameras.camera_center(modelview), d_cam @ modelview[:3, :3]


@functools.partial(jax.jit, static_argnames=('size', 'ssaa', 'fov'))
def render(scene: Scene, modelview: Array, size: int, ssaa: int = 3, fov: float = FOV) -> Render:
  """Ray casts one view of a scene.

  Args:
    scene: one Scene (no batch axis).
    modelview: float32 [4, 4] world-to-camera matrix.
    size: output side S (static).
    ssaa: colour supersampling factor per axis (static); the colour is the box
      filter of ssaa^2 samples. Depth is always taken at the pixel centre.
    fov: field of view, degrees.

  Returns:
    Render with rgb [S, S, 3], depth [S, S], zbuffer [S, S, 1].
  """
  n = size * ssaa
  origin, dirs = camera_rays(modelview, n, fov)
  rgb, t = trace(scene, origin, dirs)
  rgb = rgb.reshape(size, ssaa, size, ssaa, 3).mean(axis=(1, 3))
  if ssaa % 2:
    # The middle sample of an odd block lies at the pixel centre.
    mid = ssaa // 2
    depth = t.reshape(size, ssaa, size, ssaa)[:, mid, :, mid]
  else:
    origin, dirs = camera_rays(modelview, size, fov)
    depth = trace(scene, origin, dirs)[1].reshape(size, size)
  zbuffer = depth_lib.project_depth(depth, depth_lib.TRAIN_NEAR, depth_lib.TRAIN_FAR)[..., None]
  return Render(rgb=rgb, depth=depth, zbuffer=zbuffer)


@functools.partial(jax.jit, static_argnames=('size', 'ssaa', 'fov'))
def render_scenes(scenes: Scene, modelviews: Array, *, size: int, ssaa: int = 3,
                  fov: float = FOV) -> Render:
  """Renders a batch of scenes from a shared set of cameras.

  Views run one after another (`lax.map`) and scenes side by side (`vmap`),
  which bounds memory to B * (S ssaa)^2 * P values per step.

  Args:
    scenes: Scene with a leading batch axis B.
    modelviews: float32 [V, 4, 4] cameras, the same for every scene.
    size, ssaa, fov: as in `render`.

  Returns:
    Render with leading axes [B, V].
  """
  one_view = lambda mv: jax.vmap(lambda s: render(s, mv, size, ssaa, fov))(scenes)
  out = lax.map(one_view, jnp.asarray(modelviews, jnp.float32))
  return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), out)


def view_cameras() -> tuple[Array, Array, Array]:
  """The stored view set: (yaw [V], pitch [V], modelview [V, 4, 4]), float32, V = NUM_VIEWS.

  Views 0..26 are the authors' 3x9 set in generation order (view 0 first);
  27..32 are wider: yaw +-0.9, +-1.2 and pitch +-0.3.
  """
  yaw = jnp.array(VIEW_YAWS, jnp.float32)
  pitch = jnp.array(VIEW_PITCHES, jnp.float32)
  return yaw, pitch, cameras.orbit_camera(yaw, pitch)


def with_solid_colours(scenes: Scene) -> Scene:
  """Scenes (batched or not) with every texture replaced by its first colour, the sky's too.

  What remains is geometry, Lambertian shading and one colour per object: a
  simpler distribution for small networks trained on a CPU (on the textured
  scenes a 1.9M-parameter UNet still drew colour blobs after 650 steps).
  """
  kind = scenes.material.kind
  return scenes._replace(material=scenes.material._replace(kind=jnp.full_like(kind, TEX_SOLID)))


@functools.partial(jax.jit, static_argnames=('num',))
def sample_scenes(key: Array, start: Array, num: int) -> Scene:
  """Scenes start..start+num-1 of the stream `key`: scene i = sample_scene(fold_in(key, i), i % C)."""
  ids = start + jnp.arange(num)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(ids)
  return jax.vmap(sample_scene)(keys, ids % NUM_CLASSES)
