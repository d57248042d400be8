"""FID, KID and IS against independent numpy/scipy references, closed forms and torch-fidelity."""

import os

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats

from ivid_jax.evaluation import metrics

DATA = os.path.join(os.path.dirname(__file__), 'data')


@pytest.fixture(scope='module')
def ref():
  return dict(np.load(os.path.join(DATA, 'inception_ref.npz')))


def _features(seed, n, d, scale=1.0, shift=0.0):
  rng = np.random.RandomState(seed)
  mix = rng.standard_normal((d, d)) / np.sqrt(d)  # correlated features, as Inception's are
  return (scale * rng.standard_normal((n, d)) @ mix + shift).astype(np.float32)


def test_fid_matches_the_sqrtm_formula():
  # pytorch-fid / TTUR: |mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)) with scipy's sqrtm.
  f1, f2 = _features(0, 400, 32), _features(1, 300, 32, 1.3, 0.2)
  s1, s2 = np.cov(f1.astype(np.float64), rowvar=False), np.cov(f2.astype(np.float64), rowvar=False)
  diff = f1.astype(np.float64).mean(0) - f2.astype(np.float64).mean(0)
  expect = diff @ diff + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
  # float32 means (as torch-fidelity) against float64: ~1e-6 relative.
  assert metrics.fid(f1, f2) == pytest.approx(expect, rel=1e-5)


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
  rng = np.random.RandomState(2)
  mu1, mu2 = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
  v1, v2 = rng.uniform(0.5, 2, 8), rng.uniform(0.5, 2, 8)
  d = metrics.frechet_distance(metrics.FidStatistics(mu1, np.diag(v1)),
                               metrics.FidStatistics(mu2, np.diag(v2)))
  expect = np.sum((mu1.astype(np.float64) - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
  assert d == pytest.approx(expect, rel=1e-6)
  assert metrics.fid(_features(3, 50, 8), _features(3, 50, 8)) == pytest.approx(0.0, abs=1e-6)


def test_kid_matches_an_elementwise_mmd_reference():
  f1, f2 = _features(4, 90, 16), _features(5, 70, 16, 1.2, 0.1)
  mean, std = metrics.kid(f1, f2, subsets=5, subset_size=40)
  # The same draws (RandomState(2020): features1's subset, then features2's), then the
  # unbiased MMD^2 written out as averages over i != j, in float64.
  rng = np.random.RandomState(2020)
  k = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3
  values = []
  for _ in range(5):
    x = f1[rng.choice(90, 40, replace=False)].astype(np.float64)
    y = f2[rng.choice(70, 40, replace=False)].astype(np.float64)
    off = ~np.eye(40, dtype=bool)
    values.append(k(x, x)[off].mean() + k(y, y)[off].mean() - 2 * k(x, y).mean())
  # float32 kernels (torch-fidelity's) against float64: the MMD is a small difference of
  # O(1) sums, so compare absolutely at float32's resolution of those sums.
  assert mean == pytest.approx(np.mean(values), abs=2e-6)
  assert std == pytest.approx(np.std(values), abs=2e-6)


def test_kid_needs_enough_samples():
  with pytest.raises(ValueError, match='subsets of 1000'):
    metrics.kid(_features(0, 100, 4), _features(1, 2000, 4))


def test_inception_score_matches_scipy_entropy():
  logits = 4 * _features(6, 200, 30)
  mean, std = metrics.inception_score(logits, splits=4)
  p = scipy.special.softmax(logits[np.random.RandomState(2020).permutation(200)].astype(
      np.float64), axis=1)
  scores = [np.exp(np.mean(scipy.stats.entropy(part.T, part.mean(0)[:, None])))
            for part in np.split(p, 4)]
  assert mean == pytest.approx(np.mean(scores), rel=1e-12)
  assert std == pytest.approx(np.std(scores), rel=1e-9)


def test_inception_score_closed_forms():
  # Identical predictions carry no information: IS = 1.
  assert metrics.inception_score(np.zeros((50, 10), np.float32), splits=5)[0] == pytest.approx(1)
  # Confident, evenly spread over C classes in every split: IS = C.
  c = 8
  # (-40, not -inf: classes nobody predicts would give 0 log 0, NaN, as in torch-fidelity.)
  logits = np.full((160, 20), -40.0, np.float32)
  logits[np.arange(160), np.arange(160) % c] = 0.0
  mean, std = metrics.inception_score(logits, splits=10, shuffle=False)
  assert mean == pytest.approx(c, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_metrics_equal_torch_fidelitys_on_the_same_features(ref):
  # tests/data/make_inception_ref.py ran torch-fidelity 0.4's own metric functions.
  f1, f2, logits = ref['metric_features1'], ref['metric_features2'], ref['metric_logits']
  assert metrics.fid(f1, f2) == pytest.approx(float(ref['metric_fid']), rel=1e-9)
  # KID's kernels are float32 matmuls (torch-fidelity's too), whose sums numpy's BLAS orders
  # by CPU: bit-equal to the reference on the AMD EPYC that made it, 2.7e-6 apart on an
  # AVX-512 Xeon. (A wrong subset or kernel moves KID by far more: the next assertion.)
  kid = metrics.kid(f1, f2, subsets=10, subset_size=50)
  np.testing.assert_allclose(kid, ref['metric_kid'], rtol=2e-5)
  assert abs(metrics.kid(f1, f2, subsets=10, subset_size=50, seed=1)[0]
             - float(ref['metric_kid'][0])) > 1e-3 * float(ref['metric_kid'][0])
  np.testing.assert_allclose(metrics.inception_score(logits), ref['metric_isc'], rtol=1e-9)


def test_all_metrics_uses_torch_fidelitys_keys():
  fake = {'pool': _features(7, 30, 6), 'logits_unbiased': _features(8, 30, 5)}
  real = {'pool': _features(9, 40, 6)}
  out = metrics.all_metrics(fake, real, kid_subsets=3, kid_subset_size=20, isc_splits=3)
  assert set(out) == {'frechet_inception_distance', 'kernel_inception_distance_mean',
                      'kernel_inception_distance_std', 'inception_score_mean',
                      'inception_score_std'}
  assert out['frechet_inception_distance'] == pytest.approx(
      metrics.fid(fake['pool'], real['pool']))
