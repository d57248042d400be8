"""Ground-truth novel-view scores: SSIM, oracle and bad models beside Telea, the split entry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from ivid_jax.evaluation import ground_truth
from ivid_jax.evaluation import scenes as scenes_lib
from ivid_jax.geometry import depth as depth_lib


def _ssim_reference(a, b):
  """Wang et al.'s SSIM with scipy's Gaussian filter (mode 'mirror' = reflect-101), per channel."""
  f = lambda x: scipy.ndimage.gaussian_filter(x, 1.5, truncate=3.5, mode='mirror')
  out = []
  for c in range(a.shape[-1]):
    x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    out.append((2 * mx * my + 1e-4) * (2 * cxy + 9e-4) / ((mx ** 2 + my ** 2 + 1e-4) *
                                                          (vx + vy + 9e-4)))
  return np.mean(out, 0)


def test_ssim_matches_a_scipy_reference():
  rng = np.random.RandomState(0)
  a = rng.rand(24, 24, 3).astype(np.float32)
  b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
  # float32 local moments against float64: ~1e-6.
  np.testing.assert_allclose(ground_truth.ssim_map(a, b), _ssim_reference(a, b), atol=1e-5)
  np.testing.assert_allclose(ground_truth.ssim_map(a, a), 1.0, atol=1e-6)


@pytest.fixture(scope='module')
def case():
  """True 32 px views (smooth gradients plus texture) and conditions with a hole in each."""
  rng = np.random.RandomState(1)
  y, x = np.mgrid[0:32, 0:32] / 32
  views = np.stack([np.stack([0.5 + 0.4 * np.sin(3 * x + k), y, 0.5 + 0.3 * np.cos(5 * y * x + k)],
                             -1) for k in range(4)])
  views = np.round(np.clip(views + 0.03 * rng.standard_normal(views.shape), 0, 1) * 255) / 255
  depth = np.stack([1.0 + 0.5 * x + 0.1 * k for k in range(4)]).astype(np.float32)
  hole = (np.abs(x - 0.5) < 0.2) & (np.abs(y - 0.4) < 0.25)  # 13 x 16 px of each view unknown
  shown = np.broadcast_to(~hole, (4, 32, 32))[..., None]
  z = np.asarray(depth_lib.project_depth(depth, depth_lib.SAMPLE_NEAR, depth_lib.SAMPLE_FAR))
  condition = {'color': views * shown, 'depth': z[..., None] * shown, 'mask': shown,
               'mask_rgb': shown}
  return views, depth, z, condition


def test_oracle_scores_its_ceiling_a_bad_model_scores_below_telea(case):
  views, depth, z, condition = case
  truth = np.concatenate([views, z[..., None]], -1).astype(np.float32)
  oracle = lambda cond, key: jnp.asarray(truth)
  noise = lambda cond, key: jax.random.uniform(key, truth.shape)
  key = jax.random.key(0)
  good = ground_truth.evaluate_novel_views(condition, oracle, views, depth, key)
  bad = ground_truth.evaluate_novel_views(condition, noise, views, depth, key)
  # The oracle is exact everywhere (PSNR capped at 100 dB, SSIM 1, depth error 0).
  for region in ('shown', 'inpainted', 'all'):
    assert good['model'][f'psnr_{region}'] == ground_truth.PSNR_CAP
    assert good['model'][f'ssim_{region}'] == pytest.approx(1.0, abs=1e-5)
  assert good['model']['depth_abs_rel_unknown'] < 1e-5
  assert good['model']['shown_share'] == pytest.approx(1 - 13 * 16 / 1024)
  # Telea keeps the shown pixels (8-bit round trip of exact 8-bit colours) and fills the hole
  # from its border: far better than noise, far below the oracle. Measured in the hole:
  # PSNR 24.1 dB (noise 8.5), SSIM 0.69 (noise 0.02), depth error 1.9 % (noise 50 %).
  telea = good['telea']
  assert telea == bad['telea']  # the baseline does not depend on the model
  assert telea['psnr_shown'] == ground_truth.PSNR_CAP
  assert bad['model']['psnr_inpainted'] + 8 < telea['psnr_inpainted'] < 40
  assert bad['model']['ssim_inpainted'] < telea['ssim_inpainted'] < 0.99
  assert bad['model']['depth_abs_rel_unknown'] > 5 * telea['depth_abs_rel_unknown']


def test_empty_regions_are_nan_not_zero():
  a = np.zeros((1, 8, 8, 3))
  out = ground_truth.region_scores(a, a, np.zeros((1, 8, 8), bool))
  assert np.isnan(out['psnr']) and np.isnan(out['ssim']) and out['images'] == 0


def test_score_synthetic_split_conditions_each_target_on_the_true_earlier_views():
  rng = np.random.RandomState(2)
  views = 5
  scene = scenes_lib.Scene(rgb=rng.randint(0, 256, (views, 16, 16, 3)).astype(np.uint8),
                           depth=rng.uniform(0.8, 3, (views, 16, 16)).astype(np.float32),
                           modelview=np.tile(np.eye(4, dtype=np.float32), (views, 1, 1)))
  targets = (1, 2, 4)

  def last_earlier_view(stack, modelviews, valid, target_modelview):
    # A stand-in for aggregate_condition: the last valid view, its left half known.
    del modelviews, target_modelview
    last = stack[jnp.sum(valid) - 1]
    known = jnp.broadcast_to((jnp.arange(16) < 8)[None, :, None], (16, 16, 1))
    return {'color': last[..., :3] * known, 'depth': last[..., 3:] * known, 'mask': known,
            'mask_rgb': known}

  def oracle(cond, key):
    del key
    # Teacher forcing: target t sees exactly the true views 0..t-1 (here: view t-1's colours).
    shown = np.asarray(cond['mask_rgb'])[..., 0].astype(bool)
    np.testing.assert_allclose(np.asarray(cond['color'])[shown],
                               (scene.rgb[np.array(targets) - 1] / 255.0)[shown], atol=1e-6)
    return jnp.asarray(ground_truth.sampler_views(scene)[np.array(targets)])

  out = ground_truth.score_synthetic_split(oracle, aggregate_fn=last_earlier_view,
                                           scenes=[scene, scene], targets=targets)
  assert out['scenes'] == 2 and out['targets'] == list(targets)
  assert out['model']['psnr_all'] == ground_truth.PSNR_CAP
  assert out['telea']['psnr_inpainted'] < 30  # random texture: the baseline cannot guess it


def test_sampler_views_encode_depth_with_the_given_planes():
  depth = np.array([0.6, 1.0, 4.0, 9.5], np.float32).reshape(1, 2, 2)
  scene = scenes_lib.Scene(rgb=np.full((1, 2, 2, 3), 255, np.uint8), depth=depth,
                           modelview=np.eye(4, dtype=np.float32)[None])
  z_lin = lambda views, far: np.asarray(depth_lib.linearize_depth(views[..., 3], 0.6, far))
  # The sampler's 0.6 / 5 saturate the far backdrop at 5; a far plane of 12 keeps it.
  np.testing.assert_allclose(z_lin(ground_truth.sampler_views(scene), 5.0),
                             [[[0.6, 1.0], [4.0, 5.0]]], rtol=1e-5)
  np.testing.assert_allclose(z_lin(ground_truth.sampler_views(scene, 0.6, 12.0), 12.0), depth,
                             rtol=1e-5)
  np.testing.assert_array_equal(ground_truth.sampler_views(scene)[..., :3], 1.0)


def test_score_synthetic_split_without_the_sampler_says_what_it_needs(monkeypatch):
  import builtins  # pylint: disable=g-import-not-at-top
  real_import = builtins.__import__

  def no_sampling(name, *args, **kwargs):
    if name.startswith('ivid_jax.sampling'):
      raise ImportError(name)
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', no_sampling)
  with pytest.raises(ImportError, match='aggregate_condition'):
    ground_truth.score_synthetic_split(lambda c, k: None, scenes=[])
