"""The FID Inception in Flax against torch-fidelity's inception-v3-compat (inception_ref.npz)."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from ivid_jax.evaluation import inception

DATA = os.path.join(os.path.dirname(__file__), 'data')
_NUM_IMAGES = 8


@pytest.fixture(scope='module')
def ref():
  return dict(np.load(os.path.join(DATA, 'inception_ref.npz')))


def _layout(ref):
  return {str(n): tuple(int(x) for x in str(s).split(',') if x)
          for n, s in zip(ref['layout_names'], ref['layout_shapes'])}


@pytest.fixture(scope='module')
def npz_weights(ref, tmp_path_factory):
  """The reference's random weights as an .npz under the .pth's names, as users may store them."""
  path = tmp_path_factory.mktemp('weights') / 'pt_inception-2015-12-05-6726825d.npz'
  np.savez(path, **inception.random_state_dict(_layout(ref), int(ref['seed'])))
  return str(path)


@pytest.fixture(scope='module')
def variables(npz_weights):
  return inception.load_params(npz_weights)


def _relative_error(ours, theirs):
  return np.abs(ours - theirs).max(axis=1) / np.abs(theirs).max(axis=1)


def test_our_names_are_exactly_the_weight_files(ref):
  # The layout was read from torch-fidelity's network, which loads the .pth strictly.
  layout = _layout(ref)
  assert len(layout) == 566  # 94 conv+BN blocks x 6 tensors + fc weight and bias
  total = sum(int(np.prod(s)) for k, s in layout.items() if not k.endswith('num_batches_tracked'))
  ours = inception.abstract_variables()
  assert total == sum(int(np.prod(x.shape)) for x in jax.tree.leaves(ours))


def test_features_match_torch_fidelity_on_images_of_several_sizes(ref, variables):
  # 32^2 up to 360^2, non-square both ways, and 299^2 (no resize): torch-fidelity's TF1 resize
  # is reproduced per size, then all eight go through the network as one batch.
  x = np.concatenate([inception.preprocess(ref[f'image_{i}'][None]) for i in range(_NUM_IMAGES)])
  # Sharded as `features` shards a batch, so the two tests share one compiled network.
  out = jax.tree.map(np.asarray, inception.network(inception.replicate(variables),
                                                    inception.shard_batch(x)))
  # Measured 4.5e-7..8.9e-7 (float32 convolutions summed in another order); a half-pixel
  # bilinear resize instead of TF1's gives 7e-3..1e-2, so 1e-4 separates them by 70x.
  for key in ('pool', 'logits_unbiased'):
    err = _relative_error(out[key], ref[key])
    assert err.max() < 1e-4, (key, err)
  # The random weights keep the network alive: features are not degenerate.
  assert (ref['pool'] > 0).mean() > 0.5 and ref['pool'].std() > 1.0


def test_batched_sharded_features_at_128_px_compile_once(ref, variables):
  images = np.stack([ref['image_1'], ref['image_2']] * 4)[:7]  # 7 images: the batch is padded
  out = inception.features(variables, images, batch_size=_NUM_IMAGES)
  again = inception.features(variables, images[:3], batch_size=_NUM_IMAGES)
  assert inception.TRACES[(_NUM_IMAGES, 299, 299, 3)] == 1  # one program for every call
  assert out['pool'].shape == (7, 2048) and out['logits_unbiased'].shape == (7, 1008)
  # The previous test's bound (1e-4 separates TF1's resize from a bilinear one) on the largest
  # feature; measured 4.5e-7 of it.
  np.testing.assert_allclose(out['pool'][:2], ref['pool'][1:3], rtol=0, atol=1e-4 * 2 *
                             np.abs(ref['pool']).max())
  np.testing.assert_array_equal(again['pool'], out['pool'][:3])  # padding changes nothing


def test_resize_is_the_identity_at_299_and_tf1_bilinear_elsewhere():
  rng = np.random.RandomState(0)
  x = rng.randint(0, 256, (1, 299, 299, 3)).astype(np.float32)
  np.testing.assert_array_equal(inception.resize_bilinear_tf1(x), x)
  # TF1 (align_corners=False, no half-pixel offset): output i samples input i * in / out.
  small = rng.rand(1, 3, 5, 1).astype(np.float32)
  out = np.asarray(inception.resize_bilinear_tf1(small, size=4))
  src_y, src_x = np.arange(4) * 3 / 4, np.arange(4) * 5 / 4
  expect = np.empty((4, 4))
  for i, sy in enumerate(src_y):
    for j, sx in enumerate(src_x):
      y0, x0 = int(sy), int(sx)
      y1, x1 = min(y0 + 1, 2), min(x0 + 1, 4)
      top = small[0, y0, x0, 0] * (1 - (sx - x0)) + small[0, y0, x1, 0] * (sx - x0)
      bot = small[0, y1, x0, 0] * (1 - (sx - x0)) + small[0, y1, x1, 0] * (sx - x0)
      expect[i, j] = top * (1 - (sy - y0)) + bot * (sy - y0)
  np.testing.assert_allclose(out[0, ..., 0], expect, rtol=1e-6)


def test_mismatched_state_dicts_are_named(ref):
  weights = inception.random_state_dict(_layout(ref), 0)
  weights['Mixed_5b.branch1x1.conv.weight'] = np.zeros((64, 192, 3, 3), np.float32)
  del weights['fc.bias']
  weights['AuxLogits.fc.weight'] = np.zeros((1000, 768), np.float32)
  with pytest.raises(ValueError) as e:
    inception.params_from_state_dict(weights, source='other.pth')
  msg = str(e.value)
  assert 'other.pth' in msg and 'Mixed_5b.branch1x1.conv.weight' in msg
  assert 'params/fc/bias' in msg and 'AuxLogits.fc.weight' in msg


def test_missing_weights_file_is_a_clear_error(tmp_path):
  path = tmp_path / 'pt_inception-2015-12-05-6726825d.pth'
  with pytest.raises(FileNotFoundError, match='pt_inception-2015-12-05-6726825d.pth') as e:
    inception.load_params(path)
  assert str(path) in str(e.value) and 'https://' in str(e.value)


def test_eval_command_names_the_missing_weights_file(tmp_path):
  (tmp_path / 'fake').mkdir()
  (tmp_path / 'real').mkdir()
  missing = tmp_path / 'nowhere' / 'pt_inception.pth'
  result = subprocess.run(
      [sys.executable, '-m', 'ivid_jax.main', 'eval', f'--fake={tmp_path / "fake"}',
       f'--real={tmp_path / "real"}', f'--inception={missing}', f'--out={tmp_path / "out"}'],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('ivid-jax eval: error: ')
  assert str(missing) in last and 'no such file' in last


def test_pth_and_npz_weights_load_alike(ref, variables, tmp_path):
  torch = pytest.importorskip('torch')  # optional: the .pth path needs torch
  path = tmp_path / 'pt_inception-2015-12-05-6726825d.pth'
  weights = inception.random_state_dict(_layout(ref), int(ref['seed']))
  torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, path)
  for a, b in zip(jax.tree.leaves(inception.load_params(path)), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)
