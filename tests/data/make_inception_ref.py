"""Writes tests/data/inception_ref.npz: torch-fidelity's FID Inception and metrics on fixed inputs.

  pip install torch==2.13.0 torch-fidelity==0.4.0   # not ivid-jax dependencies
  python tests/data/make_inception_ref.py

No pretrained weights exist on the test machines and nothing here downloads:
the network gets random weights under the exact names and shapes of
pt_inception-2015-12-05-6726825d.pth, drawn by
`ivid_jax.evaluation.inception.random_state_dict` (numpy's frozen RandomState
stream), so the file stores the layout and the seed, not 95 MB of weights, and
the test redraws the same tensors. torch-fidelity loads them strictly
(`load_state_dict` fails on any name or shape that differs from its network).
See tests/data/README.md for the keys.
"""

import os
import sys
import tempfile
from unittest import mock

import numpy as np
import torch


def _import_torch_fidelity():
  """torch_fidelity, also where torchvision's compiled ops do not load.

  PyPI's Linux torchvision wheels are CUDA builds: beside the CPU torch wheel
  their ops library fails to load, and torchvision 0.28's import then stops at
  unguarded fake registrations of `torchvision::nms` and `qnms`. torch-fidelity
  only uses torchvision's datasets and transforms, so declaring those two
  schemas lets the import through; nothing here calls them.
  """
  try:
    import torch_fidelity  # pylint: disable=g-import-not-at-top
  except RuntimeError as e:
    if 'torchvision::nms' not in str(e):
      raise
    for name in [m for m in sys.modules if m.startswith(('torchvision', 'torch_fidelity'))]:
      del sys.modules[name]
    _import_torch_fidelity.lib = torch.library.Library('torchvision', 'DEF')
    for op in ('nms', 'qnms'):
      _import_torch_fidelity.lib.define(
          f'{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    import torch_fidelity  # pylint: disable=g-import-not-at-top
  return torch_fidelity


torch_fidelity = _import_torch_fidelity()
# pylint: disable=g-import-not-at-top,wrong-import-position
from torch_fidelity import feature_extractor_inceptionv3 as fe
from torch_fidelity import metric_fid
from torch_fidelity import metric_isc
from torch_fidelity import metric_kid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
from ivid_jax.evaluation import inception

OUT = os.path.join(os.path.dirname(__file__), 'inception_ref.npz')
SEED = 0
# Input sizes: upsampling from tiny and from the protocol's 128, non-square both ways,
# identity at 299, and downsampling. Eight images: one batch on the tests' 8 devices.
SIZES = ((32, 32), (128, 128), (128, 128), (64, 96), (96, 64), (200, 200), (299, 299),
         (360, 360))


def layout() -> dict[str, tuple[int, ...]]:
  """Names and shapes of torch-fidelity's network, built without loading any file."""
  with mock.patch.object(torch, 'load', return_value={}), \
       mock.patch.object(torch.nn.Module, 'load_state_dict', return_value=None):
    net = fe.FeatureExtractorInceptionV3('inception-v3-compat', ['2048'],
                                         feature_extractor_weights_path='unused')
  return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def image(rng: np.random.RandomState, height: int, width: int) -> np.ndarray:
  """Gradients, stripes, a disc edge and noise: structure at every scale the resize touches."""
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  channels = []
  for _ in range(3):
    a, b, f, phase = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(4, 30), rng.uniform(6)
    c = 128 + 60 * (a * x + b * y) + 40 * np.sin(f * (x + 0.5 * y) + phase)
    c += 50 * ((x - 0.5) ** 2 + (y - 0.4) ** 2 < 0.08)
    channels.append(c + rng.uniform(-25, 25, (height, width)))
  return np.clip(np.round(np.stack(channels, -1)), 0, 255).astype(np.uint8)


def main() -> None:
  rng = np.random.RandomState(SEED)
  shapes = layout()
  weights = inception.random_state_dict(shapes, SEED)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, inception.WEIGHTS_FILE)
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, path)
    net = fe.FeatureExtractorInceptionV3('inception-v3-compat', ['2048', 'logits_unbiased'],
                                         feature_extractor_weights_path=path)
  out = {'layout_names': np.array(list(shapes)),
         'layout_shapes': np.array([','.join(map(str, s)) for s in shapes.values()]),
         'seed': np.int64(SEED), 'torch_fidelity_version': np.array(torch_fidelity.__version__)}
  pools, logits = [], []
  for i, (h, w) in enumerate(SIZES):
    img = image(rng, h, w)
    with torch.no_grad():
      pool, logit = net(torch.from_numpy(img).permute(2, 0, 1)[None])
    out[f'image_{i}'] = img
    pools.append(pool.numpy()[0])
    logits.append(logit.numpy()[0])
  out['pool'] = np.stack(pools)
  out['logits_unbiased'] = np.stack(logits)
  assert (out['pool'] > 0).mean() > 0.5 and out['pool'].std() > 0.01, 'degenerate features'

  # The metrics on small random feature sets (torch-fidelity's own functions).
  f1 = rng.standard_normal((120, 64)).astype(np.float32)
  f2 = (1.3 * rng.standard_normal((150, 64)) + 0.2).astype(np.float32)
  lg = (3 * rng.standard_normal((100, 50))).astype(np.float32)
  t1, t2 = torch.from_numpy(f1), torch.from_numpy(f2)
  out['metric_features1'], out['metric_features2'], out['metric_logits'] = f1, f2, lg
  out['metric_fid'] = metric_fid.fid_statistics_to_metric(
      metric_fid.fid_features_to_statistics(t1), metric_fid.fid_features_to_statistics(t2),
      False)[metric_fid.KEY_METRIC_FID]
  kid = metric_kid.kid_features_to_metric(
      t1, t2, kid_subsets=10, kid_subset_size=50, verbose=False, rng_seed=2020,
      kid_kernel='poly', kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
      kid_kernel_poly_coef0=1)
  out['metric_kid'] = np.array([kid[metric_kid.KEY_METRIC_KID_MEAN],
                                kid[metric_kid.KEY_METRIC_KID_STD]])
  isc = metric_isc.isc_features_to_metric(torch.from_numpy(lg), splits=10, shuffle=True,
                                          rng_seed=2020)
  out['metric_isc'] = np.array([isc[metric_isc.KEY_METRIC_ISC_MEAN],
                                isc[metric_isc.KEY_METRIC_ISC_STD]])
  np.savez_compressed(OUT, **out)
  print(f'wrote {OUT} ({os.path.getsize(OUT) / 1e6:.2f} MB): pool std {out["pool"].std():.4f}, '
        f'FID {out["metric_fid"]:.4f}, KID {out["metric_kid"]}, IS {out["metric_isc"]}')


if __name__ == '__main__':
  main()
