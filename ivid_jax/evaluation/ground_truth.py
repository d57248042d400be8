"""Scores against ground truth on `synthetic_rgbd`: novel views of a conditional model, ceilings.

The synthetic scenes have exact depth and every view rendered, so a
conditional model can be scored against the true novel view, separately on
the pixels its condition shows (`mask_rgb`: did it keep what it was given?)
and on the pixels it had to inpaint (did it invent something plausible?),
beside a non-learned baseline: OpenCV's Telea inpainting of the same
condition (colour and depth). The same scenes give each 3D-consistency metric
its ceiling (`consistency.py` on `synthetic_scenes`).

Entry points:
- `evaluate_novel_views(condition, sample_fn, true_views, key)`: one batch of
  conditions, any model.
- `score_synthetic_split(sample_fn, ...)`: a test split end to end. Each
  target view of the authors' 3x9 order is conditioned on the TRUE earlier
  views (teacher forcing: the chain is the sampler's, the inputs are exact, so
  the score is the conditional model's own, not its compounded errors),
  aggregated by `ivid_jax.sampling.aggregate_condition` (or `aggregate_fn`).

Conventions: colours in [0, 1]; a condition's depth is z-buffer encoded with
the sampling near/far 0.6/5 (reference 6.1), as the conditional model sees it;
`synthetic_rgbd` stores z-buffer depth with the training near/far 0.5/100.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ivid_jax import images
from ivid_jax.evaluation import consistency
from ivid_jax.evaluation import scenes as scenes_lib
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import image as image_ops

# condition (dict of [B, S, S, C] arrays, see evaluate_novel_views), key -> rgbd [B, S, S, 4].
SampleFn = Callable[[dict[str, Array], Array], Array]
# (views [N, S, S, 4], modelviews [N, 4, 4], valid [N], target_modelview [4, 4]) -> condition.
AggregateFn = Callable[..., Any]

PSNR_CAP = 100.0  # dB for an exact match (mse floored at 1e-10)
TELEA_RADIUS = 3  # pixels (OpenCV's documented example value)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004
_SSIM_C1, _SSIM_C2 = 0.01 ** 2, 0.03 ** 2  # (K L)^2 for data range L = 1


def synthetic_scenes(resolution: int = 64, split: str = 'test', start: int = 0, num: int = 4,
                     views: Sequence[int] | None = None, seed: int = 0, textures: str = 'mixed'
                     ) -> list[scenes_lib.Scene]:
  """Scenes start..start+num-1 of a synthetic_rgbd split as `Scene`s (linear depth).

  Rendered directly by `synthetic_rgbd.generate` (no TFDS build). views: which
  of the 33 stored views (default the 27 of the 3x9 set, in generation order).
  textures: 'mixed' (the r<RES> configs) or 'solid' (r<RES>_solid, what the
  synthetic training configs use).
  """
  from ivid_jax.data import synthetic_rgbd  # pylint: disable=g-import-not-at-top
  config = synthetic_rgbd.SyntheticRgbdConfig(
      name=f'r{resolution}', resolution=resolution, num_train=num, num_test=num, seed=seed,
      textures=textures)
  batch = synthetic_rgbd.generate(config, split, start, num)
  views = list(range(27)) if views is None else list(views)
  # (Two steps: `[:, views, ..., 0]` would move the indexed axis to the front.)
  depth = np.asarray(depth_lib.linearize_depth(batch['depth'][:, views][..., 0],
                                               depth_lib.TRAIN_NEAR, depth_lib.TRAIN_FAR))
  variant = f'r{resolution}' + ('' if textures == 'mixed' else f'_{textures}')
  return [scenes_lib.Scene(batch['rgb'][i, views], depth[i], batch['modelview'][i, views],
                           name=f'synthetic_rgbd/{variant}:{split}[{start + i}]')
          for i in range(num)]


def sampler_views(scene: scenes_lib.Scene, near: float = depth_lib.SAMPLE_NEAR,
                  far: float = depth_lib.SAMPLE_FAR) -> np.ndarray:
  """A scene's views as the sampler holds them: float32 [V, S, S, 4], RGB and z (near/far).

  With the sampler's 0.6 / 5, depth beyond 5 (synthetic sky and backdrop) saturates at
  z = 1, as generated depth does.
  """
  z = depth_lib.project_depth(scene.depth, near, far)
  return np.concatenate([scene.rgb / np.float32(255.0), np.asarray(z)[..., None]], -1)


# ---------------------------------------------------------------------------------------------
# Image scores on a region.

@jax.jit
def ssim_map(a: Array, b: Array) -> Array:
  """SSIM (Wang et al. 2004) per pixel, averaged over channels.

  Gaussian window 11 / sigma 1.5, reflect-101 borders, data range 1.

  Args:
    a, b: float [..., S, S, C] in [0, 1].

  Returns:
    float32 [..., S, S].
  """
  blur = lambda x: jax.vmap(lambda im: image_ops.gaussian_blur(im, SSIM_SIGMA, SSIM_WINDOW))(
      x.reshape((-1,) + x.shape[-3:])).reshape(x.shape)
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  mu_a, mu_b = blur(a), blur(b)
  var_a = blur(a * a) - mu_a ** 2
  var_b = blur(b * b) - mu_b ** 2
  cov = blur(a * b) - mu_a * mu_b
  s = ((2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2) /
       ((mu_a ** 2 + mu_b ** 2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)))
  return s.mean(-1)


def region_scores(pred: np.ndarray, true: np.ndarray, region: np.ndarray) -> dict[str, float]:
  """PSNR (dB, per image then averaged) and mean SSIM over a region; NaN if the region is empty.

  Args:
    pred, true: float [B, S, S, C] in [0, 1].
    region: bool [B, S, S].
  """
  pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
  region = np.asarray(region, bool)
  count = region.sum((1, 2))
  has = count > 0
  if not has.any():
    return {'psnr': float('nan'), 'ssim': float('nan'), 'images': 0}
  mse = (((pred - true) ** 2).mean(-1) * region).sum((1, 2))[has] / count[has]
  ssim = np.asarray(ssim_map(pred, true), np.float64)
  ssim = (ssim * region).sum((1, 2))[has] / count[has]
  psnr = np.minimum(-10 * np.log10(np.maximum(mse, 1e-10)), PSNR_CAP)
  return {'psnr': float(psnr.mean()), 'ssim': float(ssim.mean()), 'images': int(has.sum())}


def depth_error(pred_z: np.ndarray, true_depth: np.ndarray, region: np.ndarray) -> float:
  """Mean |D_pred / D_true - 1| over a region; D_pred from z (0.6/5), D_true clipped to 0.6..5."""
  d_pred = np.asarray(depth_lib.linearize_depth(pred_z, depth_lib.SAMPLE_NEAR,
                                                depth_lib.SAMPLE_FAR))
  d_true = np.clip(true_depth, depth_lib.SAMPLE_NEAR, depth_lib.SAMPLE_FAR)
  region = np.asarray(region, bool)
  return float(np.abs(d_pred / d_true - 1)[region].mean()) if region.any() else float('nan')


def telea_inpaint(condition: dict[str, np.ndarray], radius: int = TELEA_RADIUS) -> np.ndarray:
  """OpenCV Telea inpainting of the condition's holes: rgbd float32 [B, S, S, 4] in [0, 1].

  Colour is inpainted (8-bit) outside mask_rgb, depth (z, 16-bit) outside mask:
  the baseline sees exactly what the model sees.
  """
  cv2 = consistency._require_cv2()  # pylint: disable=protected-access
  color = np.asarray(condition['color'], np.float32)
  z = np.asarray(condition['depth'], np.float32)[..., 0]
  hole_rgb = ~np.asarray(condition['mask_rgb'], bool)[..., 0]
  hole_z = ~np.asarray(condition['mask'], bool)[..., 0]
  out = []
  for c, d, hr, hz in zip(color, z, hole_rgb, hole_z):
    c8 = images.to_uint8(c, 'nearest')
    c8 = cv2.inpaint(c8, hr.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    # Depth goes through 16 bits: OpenCV 5.0's Telea returns garbage for float32 input
    # (alternating values far outside the border's range), while 16-bit works.
    d16 = np.clip(np.round(d * 65535), 0, 65535).astype(np.uint16)
    d = cv2.inpaint(d16, hz.astype(np.uint8), radius, cv2.INPAINT_TELEA) / np.float32(65535)
    out.append(np.concatenate([c8 / np.float32(255), d[..., None]], -1))
  return np.stack(out).astype(np.float32)


def _condition_arrays(condition: Any) -> dict[str, np.ndarray]:
  """A condition (dict or NamedTuple) -> dict of numpy arrays with a trailing channel axis."""
  if hasattr(condition, '_asdict'):
    condition = condition._asdict()
  out = {}
  for k in ('color', 'depth', 'mask', 'mask_rgb', 'depth_convex'):
    if k not in condition:
      if k == 'depth_convex':
        continue
      raise ValueError(f'a condition needs {k!r} (reference 6.4), got {sorted(condition)}')
    a = np.asarray(condition[k])
    out[k] = a[..., None] if k != 'color' and a.shape[-1] != 1 else a
  return out


def evaluate_novel_views(condition: Any, sample_fn: SampleFn, true_views: np.ndarray,
                         true_depth: np.ndarray, key: Array) -> dict[str, dict[str, float]]:
  """Scores a conditional model's views and the Telea baseline against the true views.

  Args:
    condition: dict (or NamedTuple) of [B, S, S, C] arrays, the aggregated
      condition of each target (reference 6.4): color [.., 3] in [0, 1], depth
      [.., 1] z-buffer (0.6/5), mask and mask_rgb [.., 1] (bool or 0/1),
      optionally depth_convex.
    sample_fn: (condition, key) -> rgbd [B, S, S, 4] in [0, 1] (z 0.6/5): the
      model, e.g. the conditional sampler bound to its parameters.
    true_views: uint8 or float [B, S, S, 3] true novel views (uint8 or [0, 1]).
    true_depth: float [B, S, S] their linear depth.
    key: PRNG key for sample_fn.

  Returns:
    {'model': scores, 'telea': scores}; scores: psnr/ssim over all pixels, the
    shown ones (mask_rgb) and the inpainted ones, depth abs-rel error on the
    known (mask) and unknown depth pixels, and the shown share.
  """
  cond = _condition_arrays(condition)
  true = np.asarray(true_views)
  true = true / 255.0 if true.dtype == np.uint8 else true.astype(np.float64)
  shown = cond['mask_rgb'][..., 0].astype(bool)
  known = cond['mask'][..., 0].astype(bool)
  pred = np.asarray(sample_fn({k: jnp.asarray(v) for k, v in cond.items()}, key), np.float32)
  if pred.shape != true.shape[:-1] + (4,):
    raise ValueError(f'sample_fn returned {pred.shape}, expected rgbd {true.shape[:-1] + (4,)}')
  return {name: novel_view_scores(views, true, true_depth, shown, known)
          for name, views in (('model', pred), ('telea', telea_inpaint(cond)))}


def novel_view_scores(views: np.ndarray, true_views: np.ndarray, true_depth: np.ndarray,
                      shown: np.ndarray, known: np.ndarray) -> dict[str, float]:
  """Generated novel views against the true ones (what `evaluate_novel_views` reports).

  Args:
    views: float [B, S, S, 4] generated RGB (clipped to [0, 1] here) and z-buffer depth (0.6/5).
    true_views: float [B, S, S, 3] in [0, 1].
    true_depth: float [B, S, S] linear depth.
    shown, known: bool [B, S, S], where the condition showed colour (mask_rgb) and depth (mask).

  Returns:
    psnr/ssim over all pixels, the shown ones and the inpainted ones (`<metric>_<region>`,
    with `images_<region>`, the views that have such pixels),
    depth abs-rel error on the known and unknown depth pixels, and the shown share.
  """
  rgb = np.clip(views[..., :3], 0.0, 1.0)
  scores = {'shown_share': float(shown.mean())}
  for region, mask in (('all', np.ones_like(shown)), ('shown', shown), ('inpainted', ~shown)):
    for metric, value in region_scores(rgb, true_views, mask).items():
      scores[f'{metric}_{region}'] = value
  scores['depth_abs_rel_known'] = depth_error(views[..., 3], true_depth, known)
  scores['depth_abs_rel_unknown'] = depth_error(views[..., 3], true_depth, ~known)
  return scores


def _default_aggregate() -> AggregateFn:
  try:
    from ivid_jax.sampling import aggregate_condition  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError('score_synthetic_split needs ivid_jax.sampling.aggregate_condition (the '
                      'sequential sampler), or pass aggregate_fn') from e
  return aggregate_condition


def score_synthetic_split(sample_fn: SampleFn, *, aggregate_fn: AggregateFn | None = None,
                          resolution: int = 64, split: str = 'test', num_scenes: int = 8,
                          targets: Sequence[int] = tuple(range(1, 27)), seed: int = 0,
                          scenes: Sequence[scenes_lib.Scene] | None = None
                          ) -> dict[str, Any]:
  """Novel-view scores of a conditional model on synthetic_rgbd, beside Telea (the entry point).

  For each scene and each target view j of the 3x9 order, the condition is
  aggregate_fn(views, modelviews, valid = [k < j], modelviews[j]) over the
  scene's TRUE views (fixed-size stack, so it compiles once), and the model
  inpaints it; scores are averaged over scenes.

  Args:
    sample_fn: see evaluate_novel_views; receives all targets of one scene as a batch.
    aggregate_fn: default `ivid_jax.sampling.aggregate_condition` (near/far
      0.6/5, fov 45, the authors' settings).
    resolution, split, num_scenes: which synthetic scenes (rendered, no TFDS build).
    targets: target view indices (3x9 generation order); 1..26 by default.
    seed: PRNG seed for sample_fn (folded with the scene index).
    scenes: score these instead of rendering (views in 3x9 order).

  Returns:
    {'model': mean scores, 'telea': mean scores, 'scenes': count, 'targets': list}.
  """
  aggregate_fn = aggregate_fn or _default_aggregate()
  scenes = list(scenes) if scenes is not None else synthetic_scenes(resolution, split, 0,
                                                                    num_scenes)
  targets = np.asarray(targets, np.int32)
  per_scene = []
  for i, scene in enumerate(scenes):
    views = jnp.asarray(sampler_views(scene))
    modelviews = jnp.asarray(scene.modelview)
    order = jnp.arange(len(views))
    condition = jax.lax.map(
        lambda t: aggregate_fn(views, modelviews, order < t, modelviews[t]), jnp.asarray(targets))
    per_scene.append(evaluate_novel_views(
        condition, sample_fn, scene.rgb[targets], scene.depth[targets],
        jax.random.fold_in(jax.random.key(seed), i)))
  mean = lambda name: {k: float(np.nanmean([s[name][k] for s in per_scene]))
                       for k in per_scene[0][name]}
  return {'model': mean('model'), 'telea': mean('telea'), 'scenes': len(per_scene),
          'targets': targets.tolist()}


def consistency_ceilings(scenes: Sequence[scenes_lib.Scene], *, neighbors: int = 2,
                         tsed: bool = True) -> dict[str, dict[str, float]]:
  """Reprojection, TSED and flatness of ground-truth scenes: each metric's ceiling."""
  metrics = consistency.METRICS if tsed else ('reprojection', 'flatness')
  return consistency.score_scenes(scenes, neighbors=neighbors, metrics=metrics)['mean']
