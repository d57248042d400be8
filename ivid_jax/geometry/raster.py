"""A triangle rasteriser in pure jnp: z-buffer, OpenGL facing and fill rules.

It replaces the authors' OpenGL renderers (reference section 11). Sample
points are pixel centres; screen x grows to the right and screen y downwards
(row 0 is the top of the picture, like the authors' flipped read-back).

How it works, with static shapes throughout:

1. Triangle setup, per face: clip-space vertices become three edge functions
   E_k(p) = A_k (p_x - o_x,k) + B_k (p_y - o_y,k) + C_k whose signs all equal
   the face orientation s inside the face. A face entirely in front of the
   near plane uses 2D screen-space edges, evaluated from a canonical vertex
   (the lower vertex index) so that two faces sharing an edge compute exactly
   opposite values: the mesh is watertight, and the fill rule (a sample exactly
   on an edge belongs to the face whose interior lies towards +x, then +y)
   gives each sample on a shared edge or vertex to exactly one face. A face
   crossing the near plane uses homogeneous 2D edges (Olano and Greer 1997),
   which need no clipping; fragments nearer than `near` or farther than `far`
   are dropped as OpenGL clipping would.
2. Small faces (at most `window` candidate rows and columns) test a fixed
   window x window block of samples: no gathers, one scatter per candidate.
3. Larger faces (depth-discontinuity sheets, padding skirts, magnified
   surfaces) are expanded into (face, row, column) work items, row by row
   along each face's horizontal span, and processed by a `lax.while_loop`
   over fixed-size chunks: the work is proportional to the area covered and
   no face is ever clipped, whatever its size.
4. Visibility is a scatter-min of one uint32 key per fragment: quantised
   disparity (per-image range, so precision follows the scene) in the high
   bits, face index in the low bits. Ties go to the lower face index, as
   OpenGL's 'less' depth test keeps the first face drawn.
5. A resolve pass recomputes, for the winning face of each sample, the
   perspective-correct barycentrics, the camera-space depth and the facing.

Batches are native: all faces of all images are processed together (the batch
index is part of the flat z-buffer address), which on CPU is faster than
vmapping the scatter.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax import lax

from ivid_jax.geometry import fusion_barrier

_EMPTY = jnp.uint32(0xFFFFFFFF)
# Row-span bounds are widened by this many pixels so that rounding in the span
# computation never skips a sample that the exact edge test would accept.
_SPAN_EPS = 1e-3


class Fragments(NamedTuple):
  """What the rasteriser saw at each sample.

  Attributes:
    face: int32 [B, H, W] index of the visible face, -1 where empty.
    bary: float32 [B, H, W, 3] perspective-correct barycentric weights of the
      face's three vertices (0 where empty).
    depth: float32 [B, H, W] camera-space depth (clip w) of the fragment,
      `far` where empty (what OpenGL reads back from a cleared depth buffer).
    front: bool [B, H, W] True for front-facing fragments (counter-clockwise in
      OpenGL window coordinates).
  """
  face: Array
  bary: Array
  depth: Array
  front: Array

  @property
  def covered(self) -> Array:
    """bool [B, H, W]: a fragment was drawn."""
    return self.face >= 0


class _Setup(NamedTuple):
  """Per-face rasterisation data, struct-of-arrays, each [B*T] (edges [3, B*T])."""
  a: Array       # [3, BT] edge coefficient of (p_x - o_x)
  b: Array       # [3, BT] edge coefficient of (p_y - o_y)
  c: Array       # [3, BT] edge constant
  ox: Array      # [3, BT] edge origin x
  oy: Array      # [3, BT] edge origin y
  tie: Array     # [3, BT] bool: a sample exactly on this edge belongs to the face
  r: Array       # [3, BT] vertex weight turning E_k into perspective-correct weights
  w: Array       # [3, BT] vertex clip w (camera-space depth)
  qa: Array      # disparity plane 1/w(p) = qa p_x + qb p_y + qc (affine in screen space)
  qb: Array
  qc: Array
  s: Array       # orientation: +1 / -1 (0: degenerate, never drawn)
  x0: Array      # int32 first candidate column (clipped to the screen)
  x1: Array      # int32 last candidate column
  y0: Array      # int32 first candidate row
  y1: Array      # int32 last candidate row
  span: Array    # int32 bound on the candidate samples of any row
  small: Array   # bool: handled by the fixed window
  big: Array     # bool: handled by the span expansion


class _Corners(NamedTuple):
  """A face's three corners, each a list of 3 arrays [B*T] (corner k of every face)."""
  hx: list[Array]    # homogeneous window x: (x_clip + w) * width / 2
  hy: list[Array]    # homogeneous window y, downwards: (w - y_clip) * height / 2
  hw: list[Array]    # clip w (camera-space depth)
  px: list[Array]    # screen x = hx / w (1.0 for w where the vertex is not usable)
  py: list[Array]    # screen y
  ok: list[Array]    # bool: finite and in front of the near plane


def _corners(clip: Array, faces: Array, height: int, width: int, near: float) -> _Corners:
  """Window coordinates of every face's corners, from vertices clip [B, V, 4]."""
  bsz, num_verts = clip.shape[0], clip.shape[1]
  # Per-vertex work first, then cheap 1-D gathers per corner (row gathers of
  # [T, 3, 4] blocks are several times slower on CPU).
  hx_v = (clip[..., 0] + clip[..., 3]) * (0.5 * width)
  hy_v = (clip[..., 3] - clip[..., 1]) * (0.5 * height)
  hw_v = clip[..., 3]
  ok_v = (hw_v >= near) & jnp.all(jnp.isfinite(clip), -1)
  safe_v = jnp.where(ok_v, hw_v, 1.0)
  px_v, py_v = hx_v / safe_v, hy_v / safe_v
  flat_ids = (faces + (jnp.arange(bsz, dtype=jnp.int32) * num_verts)[:, None, None]).reshape(-1, 3)
  corner = lambda v: [v.reshape(-1)[flat_ids[:, k]] for k in range(3)]
  return _Corners(*map(corner, (hx_v, hy_v, hw_v, px_v, py_v, ok_v)))


def _edge_functions(v: _Corners, ids: Array, screen: Array) -> tuple[list[Array], ...]:
  """Edge k (opposite corner k) as (a, b, c, ox, oy), each a list of 3 arrays [B*T].

  Screen mode: 2D edges from the lower-index vertex (exactly opposite values on a shared
  edge: watertight). Otherwise homogeneous edges n = h_i x h_j (Olano and Greer 1997).
  """
  a, b, c, ox, oy = [], [], [], [], []
  for k in range(3):
    i, j = (k + 1) % 3, (k + 2) % 3
    swap = ids[:, i] > ids[:, j]
    sgn = jnp.where(swap, -1.0, 1.0)
    lo_x, hi_x = jnp.where(swap, v.px[j], v.px[i]), jnp.where(swap, v.px[i], v.px[j])
    lo_y, hi_y = jnp.where(swap, v.py[j], v.py[i]), jnp.where(swap, v.py[i], v.py[j])
    # Homogeneous edge: n = h_i x h_j, E(p) = n . (p_x, p_y, 1).
    nx = v.hy[i] * v.hw[j] - v.hw[i] * v.hy[j]
    ny = v.hw[i] * v.hx[j] - v.hx[i] * v.hw[j]
    nz = v.hx[i] * v.hy[j] - v.hy[i] * v.hx[j]
    a.append(jnp.where(screen, -sgn * (hi_y - lo_y), nx))
    b.append(jnp.where(screen, sgn * (hi_x - lo_x), ny))
    c.append(jnp.where(screen, 0.0, nz))
    ox.append(jnp.where(screen, lo_x, 0.0))
    oy.append(jnp.where(screen, lo_y, 0.0))
  return a, b, c, ox, oy


def _bounding_box(v: _Corners, near: float) -> tuple[Array, Array, Array, Array, Array]:
  """(xmin, xmax, ymin, ymax, any point) of each face's visible part, in screen pixels.

  The projected vertices, or for faces crossing the near plane the polygon left after
  clipping (kept vertices and edge/near-plane crossings).
  """
  big_num = 1e30
  xmin = ymin = jnp.full_like(v.hw[0], big_num)
  xmax = ymax = jnp.full_like(v.hw[0], -big_num)
  any_pt = jnp.zeros(v.hw[0].shape, bool)
  hx, hy, hw = v.hx, v.hy, v.hw
  for k in range(3):
    xmin = jnp.where(v.ok[k], jnp.minimum(xmin, v.px[k]), xmin)
    xmax = jnp.where(v.ok[k], jnp.maximum(xmax, v.px[k]), xmax)
    ymin = jnp.where(v.ok[k], jnp.minimum(ymin, v.py[k]), ymin)
    ymax = jnp.where(v.ok[k], jnp.maximum(ymax, v.py[k]), ymax)
    i, j = k, (k + 1) % 3
    crosses = (hw[i] - near) * (hw[j] - near) < 0
    t = jnp.where(crosses, (near - hw[i]) / jnp.where(crosses, hw[j] - hw[i], 1.0), 0.0)
    cx = (hx[i] + t * (hx[j] - hx[i])) / near
    cy = (hy[i] + t * (hy[j] - hy[i])) / near
    xmin = jnp.where(crosses, jnp.minimum(xmin, cx), xmin)
    xmax = jnp.where(crosses, jnp.maximum(xmax, cx), xmax)
    ymin = jnp.where(crosses, jnp.minimum(ymin, cy), ymin)
    ymax = jnp.where(crosses, jnp.maximum(ymax, cy), ymax)
    any_pt |= v.ok[k] | crosses
  return xmin, xmax, ymin, ymax, any_pt


def _setup(clip: Array, faces: Array, height: int, width: int, near: float,
           window: int, cull_back: Array | None = None) -> _Setup:
  """Triangle setup for faces [B, T, 3] of vertices clip [B, V, 4]."""
  v = _corners(clip, faces, height, width, near)
  hx, hy, hw, px, py = v.hx, v.hy, v.hw, v.px, v.py
  ids = faces.reshape(-1, 3)
  finite = jnp.isfinite(hx[0] + hx[1] + hx[2] + hy[0] + hy[1] + hy[2] + hw[0] + hw[1] + hw[2])
  # Screen-space mode needs every vertex in front of the near plane.
  screen = v.ok[0] & v.ok[1] & v.ok[2]
  a, b, c, ox, oy = _edge_functions(v, ids, screen)

  # Orientation s (the sign of the edge functions inside), the fill rule's ties, and the
  # disparity plane.
  area2 = (px[1] - px[0]) * (py[2] - py[0]) - (py[1] - py[0]) * (px[2] - px[0])
  det = hx[0] * (hy[1] * hw[2] - hw[1] * hy[2]) - hy[0] * (hx[1] * hw[2] - hw[1] * hx[2]) \
      + hw[0] * (hx[1] * hy[2] - hy[1] * hx[2])
  den = jnp.where(screen, area2, det)
  s = jnp.where(finite, jnp.sign(den), 0.0)
  if cull_back is not None:
    # Back-facing (s > 0: clockwise in window coordinates) culled faces are
    # never drawn, so they do not occlude either.
    s = jnp.where(cull_back.reshape(-1) & (s > 0), 0.0, s)
  tie = [(s * a[k] > 0) | ((s * a[k] == 0) & (s * b[k] > 0)) for k in range(3)]
  r = [jnp.where(screen, 1.0 / safe, 1.0) for safe in (jnp.where(screen, w, 1.0) for w in hw)]
  # sum_k E_k(p) r_k = den / w(p): in screen mode the E_k sum to twice the
  # signed area, and for homogeneous edges sum_k E_k = det / w (Olano-Greer).
  inv_den = 1.0 / jnp.where(s != 0, den, 1.0)
  qa = sum(a[k] * r[k] for k in range(3)) * inv_den
  qb = sum(b[k] * r[k] for k in range(3)) * inv_den
  qc = sum((c[k] - a[k] * ox[k] - b[k] * oy[k]) * r[k] for k in range(3)) * inv_den

  xmin, xmax, ymin, ymax, any_pt = _bounding_box(v, near)
  # Candidate samples: centres inside the box, clipped to the screen. The
  # clip comes before the integer cast so huge off-screen boxes cannot overflow.
  x0 = jnp.clip(jnp.ceil(xmin - 0.5 - _SPAN_EPS), 0.0, float(width))
  x1 = jnp.clip(jnp.floor(xmax - 0.5 + _SPAN_EPS), -1.0, width - 1.0)
  y0 = jnp.clip(jnp.ceil(ymin - 0.5 - _SPAN_EPS), 0.0, float(height))
  y1 = jnp.clip(jnp.floor(ymax - 0.5 + _SPAN_EPS), -1.0, height - 1.0)
  drawable = (s != 0) & any_pt & (x0 <= x1) & (y0 <= y1)
  n_cols = jnp.where(drawable, x1 - x0 + 1.0, 0.0)
  n_rows = jnp.where(drawable, y1 - y0 + 1.0, 0.0)

  # The widest horizontal chord of a triangle is the one through its middle
  # vertex, and it splits the triangle into two with that common base:
  # chord = 2 area / height.
  dy = ymax - ymin
  chord = jnp.where(dy > 0, jnp.abs(area2) / jnp.where(dy > 0, dy, 1.0), xmax - xmin)
  span = jnp.floor(jnp.minimum(chord, float(width)) + 4 * _SPAN_EPS) + 1.0
  span = jnp.where(screen, jnp.minimum(span, n_cols), n_cols)

  small = drawable & (n_cols <= window) & (n_rows <= window)
  big = drawable & ~small
  as_int = lambda v: v.astype(jnp.int32)
  setup = _Setup(a=jnp.stack(a), b=jnp.stack(b), c=jnp.stack(c), ox=jnp.stack(ox),
                 oy=jnp.stack(oy), tie=jnp.stack(tie), r=jnp.stack(r), w=jnp.stack(hw),
                 qa=qa, qb=qb, qc=qc, s=s,
                 x0=as_int(x0), x1=as_int(x1), y0=as_int(y0), y1=as_int(y1),
                 span=as_int(jnp.where(big, span, 0.0)), small=small, big=big)
  # Materialise the per-face data: otherwise XLA fuses the whole setup into
  # every per-sample consumer and recomputes it for each of the samples.
  return fusion_barrier.materialize(setup)


def _edges(setup: _Setup, px: Array, py: Array, take=lambda v: v) -> list[Array]:
  """The three edge functions at sample (px, py); `take` selects/broadcasts face data."""
  return [take(setup.a[k]) * (px - take(setup.ox[k])) + take(setup.b[k]) * (py - take(setup.oy[k]))
          + take(setup.c[k]) for k in range(3)]


def _inside(setup: _Setup, px: Array, py: Array, take=lambda v: v) -> tuple[Array, list[Array]]:
  """Coverage test at (px, py) with the fill rule; also returns the edge values."""
  e = _edges(setup, px, py, take)
  s = take(setup.s)
  inside = s != 0
  for k in range(3):
    inside &= (s * e[k] > 0) | ((e[k] == 0) & take(setup.tie[k]))
  return inside, e


def _candidate(setup: _Setup, px: Array, py: Array, near: float, far: float,
               take=lambda v: v) -> tuple[Array, Array]:
  """Coverage and disparity 1/w at (px, py): all the z-test needs, no divisions."""
  inside, _ = _inside(setup, px, py, take)
  q = take(setup.qa) * px + take(setup.qb) * py + take(setup.qc)
  inside &= (q >= 1.0 / far) & (q <= 1.0 / near)
  return inside, q


def _fragment(setup: _Setup, px: Array, py: Array, take=lambda v: v) -> tuple[list[Array], Array]:
  """Perspective-correct barycentrics and camera depth w at (px, py)."""
  e = _edges(setup, px, py, take)
  we = [e[k] * take(setup.r[k]) for k in range(3)]
  den = we[0] + we[1] + we[2]
  inv = 1.0 / jnp.where(den != 0, den, 1.0)
  lam = [we[k] * inv for k in range(3)]
  return lam, sum(lam[k] * take(setup.w[k]) for k in range(3))


def _key_params(clip: Array, near: float, far: float, num_faces: int):
  """Per-image disparity range and bit split of the packed visibility key."""
  id_bits = max(1, int(num_faces).bit_length())
  depth_bits = 32 - id_bits
  if depth_bits < 10:
    raise ValueError(f'{num_faces} faces per image leave only {depth_bits} bits of depth '
                     'in the 32-bit visibility key; render fewer faces per image')
  w = clip[..., 3]
  ok = jnp.isfinite(w)
  w_min = jnp.clip(jnp.min(jnp.where(ok, w, far), -1), near, far)
  w_max = jnp.clip(jnp.max(jnp.where(ok, w, near), -1), near, far)
  q_hi, q_lo = 1.0 / w_min, 1.0 / w_max
  levels = float(2 ** depth_bits - 1)
  scale = levels / jnp.maximum(q_hi - q_lo, 1e-12)
  return id_bits, levels, q_hi, scale  # q_hi, scale: [B]


def _pack_key(disparity, face_local, q_hi, scale, levels, id_bits):
  q = jnp.clip(jnp.floor((q_hi - disparity) * scale), 0.0, levels)
  return (q.astype(jnp.uint32) << id_bits) | face_local.astype(jnp.uint32)


class _Keys(NamedTuple):
  """What packing a fragment's visibility key needs (`_key_params`), per face [B*T]."""
  id_bits: int
  levels: float
  q_hi: Array           # [B]
  scale: Array          # [B]
  batch_of_face: Array  # int32 [B*T]
  local_face: Array     # int32 [B*T]: the face's index within its image


def _draw_small_faces(setup: _Setup, keys: _Keys, zbuf: Array, *, height: int, width: int,
                      near: float, far: float, window: int) -> Array:
  """Scatter-min of the small faces' fragments into zbuf: a fixed window, no gathers."""
  k = jnp.arange(window, dtype=jnp.int32)
  col = setup.x0[:, None, None] + k[None, None, :]
  row = setup.y0[:, None, None] + k[None, :, None]
  bcast = lambda v: v[:, None, None]
  inside, disp = _candidate(setup, col + 0.5, row + 0.5, near, far, take=bcast)
  inside &= bcast(setup.small) & (col <= bcast(setup.x1)) & (row <= bcast(setup.y1))
  key = _pack_key(disp, bcast(keys.local_face), bcast(keys.q_hi[keys.batch_of_face]),
                  bcast(keys.scale[keys.batch_of_face]), keys.levels, keys.id_bits)
  key = jnp.where(inside, key, _EMPTY)
  # Addresses do not depend on coverage (misses carry the no-op key instead),
  # so XLA computes them without re-running the edge tests.
  pix = (bcast(keys.batch_of_face) * height + jnp.clip(row, 0, height - 1)) * width \
      + jnp.clip(col, 0, width - 1)
  return zbuf.at[pix.reshape(-1)].min(key.reshape(-1), mode='promise_in_bounds')


def _draw_big_faces(setup: _Setup, keys: _Keys, zbuf: Array, *, height: int, width: int,
                    near: float, far: float, chunk: int) -> Array:
  """Scatter-min of the large faces' fragments: (face, row, column) work items in chunks."""
  rows = jnp.where(setup.big, setup.y1 - setup.y0 + 1, 0)
  work = rows * setup.span
  ends = jnp.cumsum(work)
  starts = ends - work
  total = ends[-1]
  n_chunks = (total + chunk - 1) // chunk
  face_ids = jnp.arange(work.shape[0], dtype=jnp.int32)

  def body(state):
    c, prev, zbuf = state
    base = c * chunk
    slot = base + jnp.arange(chunk, dtype=jnp.int32)
    starts_here = (work > 0) & (starts >= base) & (starts < base + chunk)
    marks = jnp.full((chunk,), -1, jnp.int32).at[jnp.where(starts_here, starts - base, chunk)].max(
        face_ids, mode='drop')
    marks = marks.at[0].max(prev)
    # associative_scan lowers to a few vectorised passes; lax.cummax is 3x slower on CPU.
    f = lax.associative_scan(jnp.maximum, marks)
    fc = jnp.maximum(f, 0)
    take = lambda v: v[fc]
    local = slot - take(starts)
    span = jnp.maximum(take(setup.span), 1)
    # Float division: exact here (local < 2^24, and the quotient is at least
    # 0.5 / span from an integer) and vectorised, unlike int32 division on CPU.
    row_off = jnp.floor((local.astype(jnp.float32) + 0.5) / span.astype(jnp.float32)).astype(jnp.int32)
    y = take(setup.y0) + row_off
    j = local - row_off * span
    yc = y.astype(jnp.float32) + 0.5
    # Left end of this row's span: the tightest lower bound over the edges.
    s = take(setup.s)
    lower = take(setup.x0).astype(jnp.float32) + 0.5
    for k in range(3):
      a = take(setup.a[k])
      bound = take(setup.ox[k]) - (take(setup.b[k]) * (yc - take(setup.oy[k])) + take(setup.c[k])) \
          / jnp.where(a != 0, a, 1.0)
      lower = jnp.where(s * a > 0, jnp.maximum(lower, bound), lower)
    x = jnp.maximum(jnp.ceil(lower - 0.5 - _SPAN_EPS).astype(jnp.int32), take(setup.x0)) + j
    valid = (slot < total) & (f >= 0) & (x <= take(setup.x1))
    inside, disp = _candidate(setup, x.astype(jnp.float32) + 0.5, yc, near, far, take=take)
    inside &= valid
    bf = keys.batch_of_face[fc]
    key = _pack_key(disp, keys.local_face[fc], keys.q_hi[bf], keys.scale[bf], keys.levels,
                    keys.id_bits)
    pix = (bf * height + jnp.clip(y, 0, height - 1)) * width + jnp.clip(x, 0, width - 1)
    zbuf = zbuf.at[pix].min(jnp.where(inside, key, _EMPTY), mode='promise_in_bounds')
    return c + 1, f[-1], zbuf

  _, _, zbuf = lax.while_loop(lambda st: st[0] < n_chunks, body,
                              (jnp.int32(0), jnp.int32(-1), zbuf))
  return zbuf


def _resolve(setup: _Setup, zbuf: Array, id_bits: int, *, far: float,
             resolve: bool) -> Fragments:
  """Fragments from the z-buffer zbuf uint32 [B, H, W]: the winning face per sample, and
  (resolve=True) its perspective-correct barycentrics, depth and facing, recomputed."""
  bsz, height, width = zbuf.shape
  num_faces = setup.s.shape[0] // bsz
  covered = zbuf != _EMPTY
  face_local = jnp.where(covered, (zbuf & jnp.uint32(2 ** id_bits - 1)).astype(jnp.int32), 0)
  if not resolve:
    return Fragments(face=jnp.where(covered, face_local, -1), bary=None, depth=None, front=None)
  gface = face_local + (jnp.arange(bsz, dtype=jnp.int32) * num_faces)[:, None, None]
  take = lambda v: v[gface]
  py = jnp.arange(height, dtype=jnp.float32)[None, :, None] + 0.5
  px = jnp.arange(width, dtype=jnp.float32)[None, None, :] + 0.5
  lam, depth = _fragment(setup, px, py, take=take)
  bary = jnp.where(covered[..., None], jnp.stack(lam, -1), 0.0)
  return Fragments(
      face=jnp.where(covered, face_local, -1),
      bary=bary,
      depth=jnp.where(covered, depth, far),
      front=covered & (take(setup.s) < 0),
  )


def rasterize(clip: Array, faces: Array, *, height: int, width: int, near: float,
              far: float, cull_back: Array | None = None, window: int = 4,
              chunk: int | None = None, resolve: bool = True) -> Fragments:
  """Rasterises a batch of triangle meshes with a z-buffer.

  Args:
    clip: float32 [B, V, 4] clip-space vertex positions (projection @ modelview
      @ position), OpenGL convention.
    faces: int32 [B, T, 3] vertex indices per face.
    height, width: output size in samples (static).
    near, far: the projection's clip planes; fragments outside are dropped.
    cull_back: optional bool [B, T]: these faces are discarded where they face
      away from the camera (they neither draw nor occlude).
    window: side of the fixed candidate window for small faces (static).
    chunk: work items per iteration of the large-face loop (static); default
      scales with the output size.
    resolve: also compute barycentrics, depth and facing (static). False
      returns only `face` (the others None), for callers that resolve the
      fragments of their own meshes more cheaply (`resolve_fragments`).

  Returns:
    Fragments of shape [B, height, width].
  """
  if clip.ndim != 3 or clip.shape[-1] != 4:
    raise ValueError(f'clip must be [B, V, 4], got {clip.shape}')
  if faces.ndim != 3 or faces.shape[-1] != 3 or faces.shape[0] != clip.shape[0]:
    raise ValueError(f'faces must be [B, T, 3] matching clip {clip.shape}, got {faces.shape}')
  bsz, num_faces = faces.shape[0], faces.shape[1]
  clip = clip.astype(jnp.float32)
  faces = faces.astype(jnp.int32)
  setup = _setup(clip, faces, height, width, near, window, cull_back)
  keys = _Keys(*_key_params(clip, near, far, num_faces),
               batch_of_face=jnp.repeat(jnp.arange(bsz, dtype=jnp.int32), num_faces),
               local_face=jnp.tile(jnp.arange(num_faces, dtype=jnp.int32), bsz))
  n_pix = bsz * height * width
  zbuf = jnp.full((n_pix,), _EMPTY, jnp.uint32)
  zbuf = _draw_small_faces(setup, keys, zbuf, height=height, width=width, near=near, far=far,
                           window=window)
  zbuf = _draw_big_faces(setup, keys, zbuf, height=height, width=width, near=near, far=far,
                         chunk=max(4096, n_pix // 4) if chunk is None else chunk)
  return _resolve(setup, zbuf.reshape(bsz, height, width), keys.id_bits, far=far,
                  resolve=resolve)


def resolve_fragments(clip: Array, faces: Array, face: Array, *, far: float,
                      vertex_ids: list[Array] | None = None) -> Fragments:
  """Barycentrics, depth and facing of known visible faces from the clip-space vertices.

  The homogeneous (Olano-Greer) form of the rasteriser's resolve, gathering
  each corner's clip (x, y, w) (9 gathers per sample) instead of the face's
  setup (22): lambda_k ~ (h_i x h_j) . (p_x, p_y, 1) in window coordinates,
  depth = sum lambda_k w_k, front where h_0 . (h_1 x h_2) < 0 (the sign of
  sum_k lambda-numerators, as w(p) > 0).

  Args:
    clip: float32 [B, V, 4]. faces: int32 [B, T, 3].
    face: int32 [B, H, W] visible face per sample, -1 where empty.
    far: depth read where empty.
    vertex_ids: optional [3] x int32 [B, H, W] flat (batch-offset) vertex ids
      of the corners, if the caller already gathered them.

  Returns:
    Fragments [B, H, W].
  """
  num_verts = clip.shape[1]
  height, width = face.shape[1], face.shape[2]
  if vertex_ids is None:
    vertex_ids = face_vertex_ids(faces, face, num_verts)
  hx = ((clip[..., 0] + clip[..., 3]) * (0.5 * width)).reshape(-1)
  hy = ((clip[..., 3] - clip[..., 1]) * (0.5 * height)).reshape(-1)
  hw = clip[..., 3].reshape(-1)
  py = jnp.arange(height, dtype=jnp.float32)[None, :, None] + 0.5
  px = jnp.arange(width, dtype=jnp.float32)[None, None, :] + 0.5
  # Window coordinates translated to the sample (h' = (h_x - p_x h_w, h_y - p_y h_w, h_w)):
  # the edge function of corner k is then the 2-D cross product of the other two corners'
  # offsets, which keeps float32 well conditioned (the untranslated form cancels terms
  # ~S^2 w^2 down to ~area w^2).
  h = []
  for v in vertex_ids:
    w = hw[v]
    h.append((hx[v] - px * w, hy[v] - py * w, w))
  e = []
  for k in range(3):
    (xi, yi, _), (xj, yj, _) = h[(k + 1) % 3], h[(k + 2) % 3]
    e.append(xi * yj - yi * xj)
  den = e[0] + e[1] + e[2]  # det(h_0, h_1, h_2) / w(p): the face's orientation
  inv = 1.0 / jnp.where(den != 0, den, 1.0)
  lam = [e[k] * inv for k in range(3)]
  (_, _, w0), (_, _, w1), (_, _, w2) = h
  covered = face >= 0
  depth = lam[0] * w0 + lam[1] * w1 + lam[2] * w2
  return Fragments(face=face, bary=jnp.where(covered[..., None], jnp.stack(lam, -1), 0.0),
                   depth=jnp.where(covered, depth, far), front=covered & (den < 0))


def face_vertex_ids(faces: Array, face: Array, num_verts: int) -> list[Array]:
  """The flat (batch-offset) vertex ids [B, H, W] of the three corners of each sample's face."""
  bsz, num_faces = faces.shape[0], faces.shape[1]
  gface = jnp.maximum(face, 0) + (jnp.arange(bsz, dtype=jnp.int32) * num_faces)[:, None, None]
  flat = (faces.astype(jnp.int32)
          + (jnp.arange(bsz, dtype=jnp.int32) * num_verts)[:, None, None]).reshape(-1, 3)
  return [flat[:, k][gface] for k in range(3)]


def interpolate(attrs: Array, faces: Array, frags: Fragments) -> Array:
  """Perspective-correct interpolation of per-vertex attributes.

  Args:
    attrs: float [B, V, C] vertex attributes.
    faces: int32 [B, T, 3].
    frags: Fragments [B, H, W].

  Returns:
    float32 [B, H, W, C], 0 where no fragment was drawn.
  """
  bsz, num_verts, channels = attrs.shape
  num_faces = faces.shape[1]
  # One flat 1-D gather per corner and channel: on CPU these are several
  # times faster than gathering [.., 3] or [.., C] rows.
  gface = jnp.maximum(frags.face, 0) + (jnp.arange(bsz, dtype=jnp.int32) * num_faces)[:, None, None]
  vert_offset = (jnp.arange(bsz, dtype=jnp.int32) * num_verts)[:, None]
  flat_faces = (faces.astype(jnp.int32) + vert_offset[..., None]).reshape(-1, 3)
  verts = [flat_faces[:, k][gface] for k in range(3)]
  flat_attrs = attrs.astype(jnp.float32).reshape(-1, channels)
  out = []
  for c in range(channels):
    a = flat_attrs[:, c]
    out.append(sum(frags.bary[..., k] * a[verts[k]] for k in range(3)))
  return jnp.where(frags.covered[..., None], jnp.stack(out, -1), 0.0)


def project(positions: Array, modelview: Array, projection: Array) -> Array:
  """World positions [..., V, 3] -> clip coordinates [..., V, 4]."""
  mvp = projection @ modelview
  return jnp.einsum('...ij,...vj->...vi', mvp[..., :3], positions) + mvp[..., None, :, 3]

