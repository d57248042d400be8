"""FID, KID and IS of a folder of generated images against a real set: the authors' eval.py in JAX.

Protocol (reference 8): `num_samples` (10,000) generated 128 x 128 PNGs, the
real set centre-cropped and Lanczos-resized to 128 (`image_sets`), features of
the FID Inception (`inception`, torch-fidelity's inception-v3-compat), and the
metrics as torch-fidelity computes them (`metrics`): IS of the fakes (10
splits), FID and KID (100 subsets of 1000) fakes vs reals.
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import logging

from ivid_jax.evaluation import image_sets
from ivid_jax.evaluation import inception
from ivid_jax.evaluation import metrics
from ivid_jax.evaluation import report

DEFAULT_CACHE_DIR = os.path.join('~', '.cache', 'ivid-jax', 'eval')


def evaluate(*, fake: str, inception_path: str, real: str | None = None,
             tfds_spec: str | None = None, data_dir: str | None = None,
             tfds_key: str = 'image', tfds_view: int = 0,
             num_samples: int | None = 10_000, image_size: int = image_sets.IMAGE_SIZE,
             batch_size: int = 250, cache_dir: str | None = DEFAULT_CACHE_DIR, seed: int = 0,
             kid_subsets: int = metrics.KID_SUBSETS,
             kid_subset_size: int = metrics.KID_SUBSET_SIZE,
             isc_splits: int = metrics.ISC_SPLITS, skip_bad_examples: bool = False,
             progress: bool = True, variables: inception.Variables | None = None
             ) -> dict[str, Any]:
  """Runs the protocol; returns {'metrics', 'fake', 'real', 'settings'}.

  Args:
    fake: folder of generated PNGs (the sampler's `results/`).
    inception_path: pt_inception-2015-12-05-6726825d.pth or an .npz of its tensors.
    real / tfds_spec: the real set, a folder or 'NAME[:SPLIT]' (with data_dir).
    tfds_key, tfds_view: the image feature of TFDS examples and, for multi-view
      examples (synthetic_rgbd's 'rgb'), the view.
    num_samples: generated images used (None: all in the folder).
    image_size: the protocol's resolution.
    batch_size: images per Inception step over all local devices.
    cache_dir: real-feature cache (None: no cache).
    seed: draw of the generated subset when the folder holds more.
    kid_subsets, kid_subset_size, isc_splits: torch-fidelity's defaults.
    skip_bad_examples: count and skip unreadable real images instead of stopping.
    variables: Inception variables already loaded (then inception_path only labels the report).
  """
  start = time.time()
  if variables is None:
    variables = inception.load_params(inception_path)
  if cache_dir:
    cache_dir = os.path.expanduser(cache_dir)
  fake_feats, fake_info = image_sets.fake_features(
      variables, fake, num_samples=num_samples, size=image_size, seed=seed,
      batch_size=batch_size, progress=progress)
  real_pool, real_stats, real_info = image_sets.real_features(
      variables, folder=real, tfds_spec=tfds_spec, data_dir=data_dir, size=image_size,
      tfds_key=tfds_key, tfds_view=tfds_view, cache_dir=cache_dir, batch_size=batch_size,
      skip_bad_examples=skip_bad_examples, progress=progress)
  scores = metrics.all_metrics(fake_feats, {'pool': real_pool}, real_stats=real_stats,
                               kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                               isc_splits=isc_splits)
  logging.info('eval: %s', scores)
  return {
      'metrics': scores,
      'fake': fake_info,
      'real': real_info,
      'settings': {'inception': os.path.abspath(inception_path),
                   'weights_digest': image_sets.weights_digest(variables),
                   'image_size': image_size, 'num_samples': num_samples, 'seed': seed,
                   'kid_subsets': kid_subsets, 'kid_subset_size': kid_subset_size,
                   'isc_splits': isc_splits, 'seconds': round(time.time() - start, 1)},
  }


def markdown(result: dict[str, Any]) -> str:
  """The headline table of an `evaluate` result."""
  m = result['metrics']
  table = report.markdown_table(
      ['fake', 'real', 'N fake', 'N real', 'FID', 'KID x 1e3', 'IS'],
      [[result['fake']['source'], result['real']['source'], result['fake']['count'],
        result['real'].get('used', result['real']['count']), m[metrics.FID],
        f"{1e3 * m[metrics.KID_MEAN]:.3f} +- {1e3 * m[metrics.KID_STD]:.3f}",
        f"{m[metrics.ISC_MEAN]:.3f} +- {m[metrics.ISC_STD]:.3f}"]])
  return ('FID / KID / IS with the FID Inception (torch-fidelity inception-v3-compat protocol, '
          f"{result['settings']['image_size']} px).\n\n{table}")
