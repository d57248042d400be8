"""FID Inception features per second: 128 px uint8 images, resized to 299 inside, all local devices.

  python benchmarks/inception.py [--batch_sizes=8,32] [--repeats=3]

Prints one table: `inception.features` (jit, data-parallel over the local
devices) at each global batch size, median of `repeats` timed calls of two
batches each after a compile call; and, when torch and torch-fidelity are
installed (not ivid-jax dependencies), torch-fidelity's inception-v3-compat on
the same images on the CPU, as the authors' eval.py runs it without CUDA.
Random weights: speed does not depend on them.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app
from absl import flags

from ivid_jax.evaluation import inception

_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['8', '32'], 'Global batch sizes to time.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls per batch size.')
_SIZE = 128


def _median_seconds(fn, repeats):
  fn()  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _torch_fidelity_row(images, batch_size, repeats):
  """torch-fidelity on the CPU, or None when torch / torch-fidelity are not installed."""
  try:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests', 'data'))
    import make_inception_ref as ref_gen  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  weights = inception.random_state_dict(ref_gen.layout(), 0)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'weights.pth')
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, path)
    net = ref_gen.fe.FeatureExtractorInceptionV3('inception-v3-compat', ['2048', 'logits_unbiased'],
                                                 feature_extractor_weights_path=path)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

  def run():
    with torch.no_grad():
      for start in range(0, len(x), batch_size):
        net(x[start:start + batch_size])

  return _median_seconds(run, repeats), torch.get_num_threads()


def main(argv):
  del argv
  rng = np.random.RandomState(0)
  variables = jax.tree.map(
      lambda s: (0.05 * rng.standard_normal(s.shape) + (s.ndim == 1)).astype(np.float32),
      inception.abstract_variables())
  device = jax.devices()[0]
  print(f'# {device.platform.upper()} {device.device_kind}, {jax.local_device_count()} local '
        f'device(s), {platform.processor() or platform.machine()}, jax {jax.__version__}')
  print('| implementation | global batch | images / s | ms / image |')
  print('|---|---:|---:|---:|')
  for bsz in map(int, _BATCH_SIZES.value):
    bsz = inception.round_batch_size(bsz)
    images = rng.randint(0, 256, (2 * bsz, _SIZE, _SIZE, 3)).astype(np.uint8)
    seconds = _median_seconds(lambda: inception.features(variables, images, batch_size=bsz),
                              _REPEATS.value)
    print(f'| ivid-jax (jit, {jax.local_device_count()} device(s)) | {bsz} | '
          f'{len(images) / seconds:.1f} | {1e3 * seconds / len(images):.0f} |')
    torch_row = _torch_fidelity_row(images, bsz, _REPEATS.value)
    if torch_row is not None:
      seconds, threads = torch_row
      print(f'| torch-fidelity (CPU, {threads} threads) | {bsz} | {len(images) / seconds:.1f} | '
            f'{1e3 * seconds / len(images):.0f} |')


if __name__ == '__main__':
  app.run(main)
