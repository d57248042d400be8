"""FID, KID and IS on Inception features, as torch-fidelity 0.4 computes them (reference 8).

The authors' eval.py calls `torch_fidelity.calculate_metrics(isc=True, fid=True,
kid=True)` with its defaults: FID and KID on the 2048-d pool features, IS on the
fakes' unbiased logits in 10 splits, KID over 100 subsets of 1000 with the cubic
polynomial kernel k(x, y) = (x.y / d + 1)^3, every random draw from
`np.random.RandomState(2020)`. The statistics below repeat torch-fidelity's
numpy operations and dtypes (float32 features and means, float64 covariances,
the eigenvalue form of tr sqrt(S1 S2), float64 softmax for IS), so the numbers
agree with torch-fidelity's to rounding on the same features.

They run on the host in numpy, not in JAX: they cost seconds next to the
network's minutes, and FID needs float64 (the trace of a matrix square root of
a product of 2048 x 2048 covariances), which TPUs do not do.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# torch-fidelity's defaults (torch_fidelity/defaults.py), which eval.py keeps.
RNG_SEED = 2020
ISC_SPLITS = 10
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_DEGREE = 3
KID_COEF0 = 1.0

# The keys torch-fidelity's calculate_metrics returns.
FID = 'frechet_inception_distance'
KID_MEAN, KID_STD = 'kernel_inception_distance_mean', 'kernel_inception_distance_std'
ISC_MEAN, ISC_STD = 'inception_score_mean', 'inception_score_std'


class FidStatistics(NamedTuple):
  """Mean float32 [D] and covariance float64 [D, D] of a feature set."""
  mu: np.ndarray
  sigma: np.ndarray


def _features(x: np.ndarray, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f'{name} must be [N, D] features, got shape {x.shape}')
  if not np.all(np.isfinite(x)):
    raise ValueError(f'{name} has non-finite values')
  return x.astype(np.float32, copy=False)


def fid_statistics(features: np.ndarray) -> FidStatistics:
  """mu (float32, as np.mean of float32 features) and the unbiased covariance (float64)."""
  features = _features(features, 'features')
  if len(features) < 2:
    raise ValueError(f'FID needs at least 2 samples, got {len(features)}')
  return FidStatistics(np.mean(features, axis=0), np.cov(features, rowvar=False))


def frechet_distance(stats1: FidStatistics, stats2: FidStatistics) -> float:
  """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), tr sqrt as the sum of sqrt(eig(S1 S2))."""
  mu1, sigma1 = stats1
  mu2, sigma2 = stats2
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f'feature dimensions differ: {mu1.shape} vs {mu2.shape}')
  diff = mu1 - mu2
  # Eigenvalues of a product of PSD matrices are real and >= 0 up to rounding; the
  # complex sqrt then .real drops the rounding (torch-fidelity, after TTUR's fid.py).
  tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(sigma1.dot(sigma2)).astype('complex128')).real)
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid(features1: np.ndarray, features2: np.ndarray) -> float:
  """Frechet Inception Distance between two feature sets [N, D], [M, D]."""
  return frechet_distance(fid_statistics(features1), fid_statistics(features2))


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = KID_DEGREE,
                      coef0: float = KID_COEF0) -> np.ndarray:
  """(x y^T / d + coef0)^degree, float32 as torch-fidelity's kernel_poly."""
  return (np.matmul(x, y.T) * (1.0 / x.shape[1]) + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
  """Unbiased MMD^2: off-diagonal means of K_xx and K_yy minus twice the mean of K_xy."""
  m = k_xx.shape[0]
  kt_xx = k_xx.sum(axis=1) - np.diagonal(k_xx)
  kt_yy = k_yy.sum(axis=1) - np.diagonal(k_yy)
  return float((kt_xx.sum() + kt_yy.sum()) / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m))


def kid(features1: np.ndarray, features2: np.ndarray, *, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = RNG_SEED) -> tuple[float, float]:
  """Kernel Inception Distance: mean and std of the unbiased MMD^2 over random subsets.

  Each subset draws `subset_size` rows of each set without replacement
  (features1 first, then features2, from one RandomState(seed)), as torch-fidelity.

  Returns:
    (mean, std).
  """
  f1, f2 = _features(features1, 'features1'), _features(features2, 'features2')
  if f1.shape[1] != f2.shape[1]:
    raise ValueError(f'feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}')
  if min(len(f1), len(f2)) < subset_size:
    raise ValueError(f'KID subsets of {subset_size} need at least that many samples in each set '
                     f'(got {len(f1)} and {len(f2)}); lower the subset size')
  rng = np.random.RandomState(seed)
  mmds = np.zeros(subsets)
  for i in range(subsets):
    x = f1[rng.choice(len(f1), subset_size, replace=False)]
    y = f2[rng.choice(len(f2), subset_size, replace=False)]
    mmds[i] = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y),
                            polynomial_kernel(y, y))
  return float(np.mean(mmds)), float(np.std(mmds))


def _log_softmax(x: np.ndarray) -> np.ndarray:
  shifted = x - x.max(axis=1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def inception_score(logits: np.ndarray, *, splits: int = ISC_SPLITS, shuffle: bool = True,
                    seed: int = RNG_SEED) -> tuple[float, float]:
  """Inception Score exp(E_x KL(p(y|x) || p(y))) per split, in float64.

  Rows are permuted by RandomState(seed) first (torch-fidelity's samples_shuffle);
  split i holds rows [i N / splits, (i + 1) N / splits).

  Returns:
    (mean, std) over the splits.
  """
  logits = _features(logits, 'logits')
  n = len(logits)
  if n < splits:
    raise ValueError(f'IS with {splits} splits needs at least {splits} samples, got {n}')
  if shuffle:
    logits = logits[np.random.RandomState(seed).permutation(n)]
  log_p = _log_softmax(logits.astype(np.float64))
  p = np.exp(log_p)
  scores = []
  for i in range(splits):
    part = slice(i * n // splits, (i + 1) * n // splits)
    q = p[part].mean(axis=0, keepdims=True)
    kl = (p[part] * (log_p[part] - np.log(q))).sum(axis=1).mean()
    scores.append(np.exp(kl))
  return float(np.mean(scores)), float(np.std(scores))


def all_metrics(fake: dict[str, np.ndarray], real: dict[str, np.ndarray], *,
                real_stats: FidStatistics | None = None, kid_subsets: int = KID_SUBSETS,
                kid_subset_size: int = KID_SUBSET_SIZE, isc_splits: int = ISC_SPLITS
                ) -> dict[str, float]:
  """IS of the fakes, FID and KID fake vs real, under torch-fidelity's keys.

  Args:
    fake: {'pool': [N, 2048], 'logits_unbiased': [N, 1008]}.
    real: {'pool': [M, 2048]}.
    real_stats: the real set's cached FID statistics, if any.

  Returns:
    {inception_score_mean, inception_score_std, frechet_inception_distance,
     kernel_inception_distance_mean, kernel_inception_distance_std}.
  """
  isc = inception_score(fake['logits_unbiased'], splits=isc_splits)
  fid_value = frechet_distance(fid_statistics(fake['pool']),
                               real_stats or fid_statistics(real['pool']))
  kid_value = kid(fake['pool'], real['pool'], subsets=kid_subsets, subset_size=kid_subset_size)
  return {ISC_MEAN: isc[0], ISC_STD: isc[1], FID: fid_value, KID_MEAN: kid_value[0],
          KID_STD: kid_value[1]}
