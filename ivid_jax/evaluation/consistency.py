"""3D consistency of multi-view RGBD scenes without a pretrained network.

Three measures of a scene (views + linear depths + cameras), each with a
ceiling given by ground-truth scenes (`ground_truth.py`):

- Reprojection: every view is lifted to a mesh with its own depth and rendered
  into its neighbours' cameras (`geometry.render.render_views`, one z-buffer
  per source view, the sampler's mesh rules); where the warp lands on a
  surface texel (aggregation weight > 1e-6: no discontinuity sheet, no eroded
  texel, no back face) that the neighbour's own depth does not hide, we compare
  colours (PSNR) and depths (absolute relative error, share within 2 %). A
  consistent scene scores high: the neighbour shows what the warp predicts.
- TSED (Yu et al. 2023, "Long-Term Photometric Consistent Novel View Synthesis
  with Diffusion Models"): SIFT matches between neighbouring views (OpenCV,
  detected at 256 px, ratio test and cross-check as COLMAP's matcher), each
  match's symmetric epipolar distance under the known cameras,
  SED = (d(x_j, F x_i) + d(x_i, F^T x_j)) / 2 in pixels of a 256 px image; a
  pair is consistent when it has >= 10 matches whose median SED is < 2 px.
  It needs no depth, so it also scores images whose depth is not trusted.
- Flatness: the share of a depth map's variance that one plane explains (R^2
  of a least-squares plane fitted to disparity, which is exactly affine in the
  pixel coordinates for a plane), to catch the flat "billboard" geometry that
  scores well on FID and on reprojection alike.

Conventions: those of `geometry.cameras` (OpenGL axes, world-to-camera
modelviews, fov in degrees); pixel (row r, col c) has its centre at
(x, y) = (c + 0.5, r + 0.5) in pixel units, y down.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax import Array

from ivid_jax.geometry import cameras
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import render as render_lib

# A fragment is a surface texel when its aggregation weight exceeds this: the
# authors' colour counter (reference 6.4) uses the same cut, which drops
# discontinuity sheets (1e-16), eroded texels (<= 1e-8) and back faces (0).
SURFACE_WEIGHT = 1e-6
DEPTH_INLIER_RTOL = 0.02  # a depth "agrees" within 2 %
# The warp is hidden in the target when it lies this much behind the target's own surface.
OCCLUSION_RTOL = 0.03
# Yu et al.'s TSED settings: SED threshold in pixels of a 256 x 256 image, and the fewest
# matches a pair needs to count as consistent. SED is reported at TSED_SIZE pixels.
TSED_SIZE = 256
TSED_T_ERROR = 2.0
TSED_T_MATCHES = 10
METRICS = ('reprojection', 'tsed', 'flatness')


def _require_cv2():
  try:
    import cv2  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "TSED and the Telea baseline need OpenCV: pip install 'ivid-jax[eval]' (it adds "
        'opencv-python-headless); or leave TSED out (eval-3d --metrics=reprojection,flatness)'
    ) from e
  return cv2


# ---------------------------------------------------------------------------------------------
# Pairs of neighbouring views.

def neighbor_pairs(modelviews: np.ndarray, k: int = 2) -> np.ndarray:
  """Ordered pairs (source, target) of neighbouring views, both directions.

  Each view's k nearest other views by the angle between optical axes; the
  union is made symmetric, so every pair is scored both ways.

  Args:
    modelviews: float [V, 4, 4].
    k: neighbours per view.

  Returns:
    int32 [P, 2], sorted.
  """
  modelviews = np.asarray(modelviews, np.float64)
  v = len(modelviews)
  if v < 2:
    raise ValueError(f'consistency needs at least 2 views, got {v}')
  axes = modelviews[:, 2, :3]  # camera +z axis in world coordinates (rows of the rotation)
  angle = np.arccos(np.clip(axes @ axes.T, -1.0, 1.0))
  np.fill_diagonal(angle, np.inf)
  pairs = set()
  for i in range(v):
    for j in np.argsort(angle[i], kind='stable')[:min(k, v - 1)]:
      pairs.update({(i, int(j)), (int(j), i)})
  return np.array(sorted(pairs), np.int32)


# ---------------------------------------------------------------------------------------------
# Reprojection.

class PairScores(NamedTuple):
  """Per ordered pair (source -> target), [P] each."""
  overlap: Array       # pixels of the target where the warp shows an unoccluded surface texel
  sq_error: Array      # sum over the overlap (and RGB) of squared colour differences, [0, 1] units
  abs_rel: Array       # sum over the overlap of |D_warp - D_target| / D_target
  depth_inliers: Array  # overlap pixels with |D_warp / D_target - 1| < DEPTH_INLIER_RTOL
  pixels: Array        # pixels per view


@functools.partial(jax.jit, static_argnames=('fov', 'atol', 'rtol', 'erode_rgb',
                                             'occlusion_rtol'))
def reprojection_pairs(rgb: Array, depth: Array, modelviews: Array, pairs: Array, *,
                       fov: float = 45.0, atol: float = 0.03, rtol: float = 0.03,
                       erode_rgb: int = 3, occlusion_rtol: float = OCCLUSION_RTOL) -> PairScores:
  """Warps views[source] into camera[target] for each pair and compares with views[target].

  Args:
    rgb: float [V, S, S, 3] in [0, 1].
    depth: float [V, S, S] linear depth D (> 0).
    modelviews: float [V, 4, 4].
    pairs: int [P, 2] (source, target).
    fov: degrees.
    atol, rtol, erode_rgb: mesh rules (the sampler's: 0.03, 0.03, 3).
    occlusion_rtol: the warp counts only where D_warp <= D_target (1 + this).

  Returns:
    PairScores, sums per pair (`reprojection_summary` turns them into means).
  """
  rgb = jnp.asarray(rgb, jnp.float32)
  depth = jnp.asarray(depth, jnp.float32)
  size = rgb.shape[1]
  # Encode depth with the renderer's own clip planes: no clipping of far content (a sky at
  # 20 units) and float32 z keeps D to ~1e-5 relative.
  z = depth_lib.project_depth(depth, render_lib.RENDER_NEAR, render_lib.RENDER_FAR)
  rgbd = jnp.concatenate([rgb, z[..., None]], -1)

  def one(pair):
    src, dst = pair[0], pair[1]
    out = render_lib.render_views(
        rgbd[src][None], modelviews[src][None], modelviews[dst], size=size, fov=fov,
        near=render_lib.RENDER_NEAR, far=render_lib.RENDER_FAR, padding=None, atol=atol,
        rtol=rtol, erode_rgb=erode_rgb, shared_zbuffer=False)
    d_dst = depth[dst]
    ok = (out.weight[0] > SURFACE_WEIGHT) & (out.depth[0] <= d_dst * (1.0 + occlusion_rtol))
    okf = ok.astype(jnp.float32)
    rel = jnp.abs(out.depth[0] - d_dst) / d_dst
    sq = jnp.sum((out.color[0] - rgb[dst]) ** 2, -1)
    return PairScores(overlap=okf.sum(), sq_error=(sq * okf).sum(), abs_rel=(rel * okf).sum(),
                      depth_inliers=((rel < DEPTH_INLIER_RTOL) & ok).sum().astype(jnp.float32),
                      pixels=jnp.float32(size * size))

  return jax.lax.map(one, jnp.asarray(pairs, jnp.int32))


# A pair's PSNR where its colours agree exactly (float32 sums of 8-bit colours: ~0).
PSNR_FLOOR_DB = 100.0
_MSE_FLOOR = 10.0 ** (-PSNR_FLOOR_DB / 10.0)


def reprojection_summary(scores: PairScores, min_overlap: float = 0.01) -> dict[str, float]:
  """Means over pairs whose overlap covers at least `min_overlap` of the target.

  Returns:
    psnr (dB, of each pair's mean squared colour error, averaged over pairs;
    a pair that reprojects exactly counts as PSNR_FLOOR_DB), psnr_median (the
    median pair's), exact_pairs (share of counted pairs whose colours agree
    exactly: on solid-colour scenes the ground truth's mean psnr is mostly
    their floor, so the median says more), abs_rel, depth_inliers (share of
    overlap pixels within 2 %), coverage (overlap share of the target), pairs
    (counted) and pairs_skipped.
  """
  s = jax.tree.map(np.asarray, scores)
  keep = s.overlap >= min_overlap * s.pixels
  if not keep.any():
    return {'psnr': float('nan'), 'psnr_median': float('nan'), 'exact_pairs': float('nan'),
            'abs_rel': float('nan'), 'depth_inliers': float('nan'),
            'coverage': float(np.mean(s.overlap / s.pixels)), 'pairs': 0,
            'pairs_skipped': int(len(keep))}
  n = s.overlap[keep]
  mse = s.sq_error[keep] / (3.0 * n)
  psnr = -10.0 * np.log10(np.maximum(mse, _MSE_FLOOR))
  return {
      'psnr': float(np.mean(psnr)),
      'psnr_median': float(np.median(psnr)),
      'exact_pairs': float(np.mean(mse <= _MSE_FLOOR)),
      'abs_rel': float(np.mean(s.abs_rel[keep] / n)),
      'depth_inliers': float(np.mean(s.depth_inliers[keep] / n)),
      'coverage': float(np.mean(s.overlap / s.pixels)),
      'pairs': int(keep.sum()),
      'pairs_skipped': int((~keep).sum()),
  }


# ---------------------------------------------------------------------------------------------
# TSED.

def intrinsics(size: int, fov: float = 45.0) -> np.ndarray:
  """K [3, 3] with K X_cam ~ (x, y, 1) in pixels (y down, centres at +0.5) for OpenGL cameras."""
  f = size * cameras.focal_normalized(fov)
  return np.array([[f, 0.0, -size / 2], [0.0, -f, -size / 2], [0.0, 0.0, -1.0]])


def fundamental_matrix(modelview_i: np.ndarray, modelview_j: np.ndarray, size: int,
                       fov: float = 45.0) -> np.ndarray:
  """F [3, 3] with x_j^T F x_i = 0 for pixel coordinates of one 3D point in views i and j."""
  rel = np.asarray(modelview_j, np.float64) @ np.linalg.inv(np.asarray(modelview_i, np.float64))
  r, t = rel[:3, :3], rel[:3, 3]
  t_cross = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
  k_inv = np.linalg.inv(intrinsics(size, fov))
  return k_inv.T @ t_cross @ r @ k_inv


def symmetric_epipolar_distance(f: np.ndarray, x_i: np.ndarray, x_j: np.ndarray) -> np.ndarray:
  """(d(x_j, F x_i) + d(x_i, F^T x_j)) / 2 in pixels; x_i, x_j float [M, 2]."""
  hi = np.concatenate([x_i, np.ones((len(x_i), 1))], 1)
  hj = np.concatenate([x_j, np.ones((len(x_j), 1))], 1)
  line_j = hi @ f.T  # F x_i, one line per row
  line_i = hj @ f    # F^T x_j
  algebraic = np.abs(np.sum(hj * line_j, 1))
  d_j = algebraic / np.maximum(np.hypot(line_j[:, 0], line_j[:, 1]), 1e-12)
  d_i = algebraic / np.maximum(np.hypot(line_i[:, 0], line_i[:, 1]), 1e-12)
  return 0.5 * (d_i + d_j)


def sift_features(images: np.ndarray, work_size: int = TSED_SIZE
                  ) -> list[tuple[np.ndarray, np.ndarray | None]]:
  """SIFT keypoints and descriptors of each view, detected at `work_size` pixels.

  Views smaller than work_size are enlarged (bicubic) first: SIFT finds few
  keypoints in 32-128 px images, and Yu et al. matched at 256 px.

  Args:
    images: uint8 [V, S, S, 3].

  Returns:
    Per view (points float64 [n, 2] in the view's own pixel coordinates,
    centres at +0.5; descriptors float32 [n, 128] or None).
  """
  cv2 = _require_cv2()
  sift = cv2.SIFT_create()
  size = images.shape[1]
  scale = max(1.0, work_size / size)
  out = []
  for image in np.asarray(images):
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if scale > 1:
      grey = cv2.resize(grey, (round(size * scale),) * 2, interpolation=cv2.INTER_CUBIC)
    keypoints, descriptors = sift.detectAndCompute(grey, None)
    # OpenCV puts pixel centres at integers, we at +0.5; enlarging by s maps x' -> (x' + 0.5) / s.
    points = (np.array([k.pt for k in keypoints], np.float64).reshape(-1, 2) + 0.5) / scale
    out.append((points, descriptors))
  return out


def match_features(des_i: np.ndarray | None, des_j: np.ndarray | None, ratio: float = 0.8
                   ) -> np.ndarray:
  """Mutual nearest neighbours that pass Lowe's ratio test: int [M, 2] (index in i, in j).

  COLMAP's matcher defaults (ratio 0.8, cross-check), whose raw matches Yu et al.'s TSED reads.
  """
  cv2 = _require_cv2()
  if des_i is None or des_j is None or len(des_i) < 2 or len(des_j) < 2:
    return np.zeros((0, 2), np.int64)
  matcher = cv2.BFMatcher(cv2.NORM_L2)
  backward = {m[0].queryIdx: m[0].trainIdx for m in matcher.knnMatch(des_j, des_i, k=1) if m}
  good = [(m[0].queryIdx, m[0].trainIdx) for m in matcher.knnMatch(des_i, des_j, k=2)
          if len(m) == 2 and m[0].distance < ratio * m[1].distance
          and backward.get(m[0].trainIdx) == m[0].queryIdx]
  return np.array(good, np.int64).reshape(-1, 2)


def unordered(pairs: np.ndarray) -> np.ndarray:
  """The (i, j), i < j, of a list of ordered pairs."""
  pairs = np.asarray(pairs)
  return np.unique(np.sort(pairs, axis=1), axis=0) if len(pairs) else pairs


def tsed_pairs(rgb: np.ndarray, modelviews: np.ndarray, pairs: np.ndarray, *, fov: float = 45.0,
               ratio: float = 0.8, work_size: int = TSED_SIZE) -> list[np.ndarray]:
  """SED of every match of every neighbour pair, in pixels of a `work_size` image.

  Each unordered pair is scored once (SED is symmetric). Distances are
  measured in the views' own pixels and scaled to a work_size-pixel image, so
  Yu et al.'s thresholds (2 px at 256) apply at any resolution.

  Args:
    rgb: uint8 [V, S, S, 3].
    modelviews: float [V, 4, 4].
    pairs: int [P, 2] neighbour pairs (`neighbor_pairs`).

  Returns:
    Per unordered pair (i < j, sorted), float64 [M] SED of its matches.
  """
  rgb = np.asarray(rgb)
  size = rgb.shape[1]
  feats = sift_features(rgb, work_size)
  out = []
  for i, j in unordered(pairs):
    m = match_features(feats[i][1], feats[j][1], ratio)
    f = fundamental_matrix(modelviews[i], modelviews[j], size, fov)
    sed = symmetric_epipolar_distance(f, feats[i][0][m[:, 0]], feats[j][0][m[:, 1]])
    out.append(sed * (work_size / size))
  return out


def tsed_summary(seds: list[np.ndarray], *, t_error: float = TSED_T_ERROR,
                 t_matches: int = TSED_T_MATCHES) -> dict[str, float]:
  """TSED and the share of matches within t_error (Yu et al.'s T_error = 2 px, T_matches = 10).

  Args:
    seds: per pair, the SED of its matches (pixels at TSED_SIZE).
    t_error, t_matches: a pair is consistent with >= t_matches matches whose
      median SED is below t_error.

  Returns:
    tsed (consistent pairs / pairs), match_pass (matches below t_error / all
    matches), median_sed (over all matches), matches_per_pair.
  """
  consistent = [len(s) >= t_matches and np.median(s) < t_error for s in seds]
  every = np.concatenate(seds) if seds else np.zeros(0)
  return {
      'tsed': float(np.mean(consistent)) if seds else float('nan'),
      'match_pass': float(np.mean(every < t_error)) if len(every) else float('nan'),
      'median_sed': float(np.median(every)) if len(every) else float('nan'),
      'matches_per_pair': float(len(every) / len(seds)) if seds else 0.0,
  }


# ---------------------------------------------------------------------------------------------
# Flatness.

@jax.jit
def flatness(depth: Array, valid: Array | None = None) -> Array:
  """Share of the disparity variance that the best plane explains (R^2), per map.

  A plane in front of a pinhole camera has disparity 1 / D exactly affine in
  the pixel coordinates, so R^2 = 1 for any plane and falls as the geometry
  departs from one; a map of constant depth counts as flat (1).

  Args:
    depth: float [..., S, S] linear depth D > 0.
    valid: optional bool [..., S, S] pixels to fit (default all).

  Returns:
    float32 [...] in [0, 1].
  """
  depth = jnp.asarray(depth, jnp.float32)
  h, w = depth.shape[-2:]
  w8 = jnp.ones(depth.shape, jnp.float32) if valid is None else jnp.asarray(valid, jnp.float32)
  disparity = 1.0 / depth
  y, x = jnp.meshgrid((jnp.arange(h) + 0.5) / h - 0.5, (jnp.arange(w) + 0.5) / w - 0.5,
                      indexing='ij')
  basis = jnp.stack([x, y, jnp.ones_like(x)], -1)  # [S, S, 3]
  n = jnp.maximum(w8.sum((-1, -2)), 1.0)
  mean = (w8 * disparity).sum((-1, -2)) / n
  centred = disparity - mean[..., None, None]
  # Weighted least squares of the centred disparity on (x, y, 1), by its normal equations.
  ata = jnp.einsum('...hw,hwi,hwj->...ij', w8, basis, basis)
  atb = jnp.einsum('...hw,hwi,...hw->...i', w8, basis, centred)
  coef = jnp.linalg.solve(ata + 1e-9 * jnp.eye(3), atb[..., None])[..., 0]
  residual = centred - jnp.einsum('hwi,...i->...hw', basis, coef)
  ss_tot = (w8 * centred ** 2).sum((-1, -2))
  ss_res = (w8 * residual ** 2).sum((-1, -2))
  # Relative to the mean disparity: a map with no variance to speak of is flat.
  flat = ss_tot <= 1e-12 * n * mean ** 2
  return jnp.where(flat, 1.0, jnp.clip(1.0 - ss_res / jnp.where(flat, 1.0, ss_tot), 0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Whole scenes.

def score_scene(scene, *, neighbors: int = 2, metrics: Sequence[str] = METRICS
                ) -> dict[str, dict[str, float]]:
  """The chosen metrics of one `scenes.Scene` (views scored against their k nearest neighbours)."""
  unknown = set(metrics) - set(METRICS)
  if unknown:
    raise ValueError(f'unknown 3D metrics {sorted(unknown)}; choose from {METRICS}')
  pairs = neighbor_pairs(scene.modelview, neighbors)
  out = {}
  if 'reprojection' in metrics:
    scores = reprojection_pairs(scene.rgb.astype(np.float32) / 255.0, scene.depth,
                                scene.modelview, pairs, fov=scene.fov)
    out['reprojection'] = reprojection_summary(scores)
  if 'tsed' in metrics:
    out['tsed'] = tsed_summary(tsed_pairs(scene.rgb, scene.modelview, pairs, fov=scene.fov))
  if 'flatness' in metrics:
    flat = np.asarray(flatness(scene.depth))
    out['flatness'] = {'flatness': float(flat.mean()), 'flatness_max': float(flat.max())}
  return out


def score_scenes(scenes: Iterable, *, neighbors: int = 2, metrics: Sequence[str] = METRICS,
                 progress: bool = False, total: int | None = None) -> dict:
  """score_scene over scenes; 'mean' averages each number over scenes (NaNs left out)."""
  per_scene = []
  for scene in tqdm.tqdm(scenes, total=total, desc='scenes', disable=not progress):
    per_scene.append({'name': scene.name, **score_scene(scene, neighbors=neighbors,
                                                        metrics=metrics)})
  if not per_scene:
    raise ValueError('no scenes to score')
  mean = {}
  for metric in metrics:
    keys = per_scene[0][metric]
    mean[metric] = {k: float(np.nanmean([s[metric][k] for s in per_scene])) for k in keys}
  return {'mean': mean, 'per_scene': per_scene, 'scenes': len(per_scene)}
