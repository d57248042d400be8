"""Initialisation: the authors' PyTorch init and the G_u -> G_c widening of the first conv."""

import numpy as np
import pytest

from ivid_jax.training import init


def _flax_like():
  g = np.random.default_rng(0)
  return {
      'conv': {'kernel': g.standard_normal((3, 3, 16, 64)).astype(np.float32),
               'bias': np.zeros(64, np.float32)},
      'zero': {'kernel': np.zeros((3, 3, 64, 8), np.float32), 'bias': np.zeros(8, np.float32)},
      'dense': {'kernel': g.standard_normal((256, 128)).astype(np.float32),
                'bias': np.zeros(128, np.float32)},
      'label_emb': {'embedding': g.standard_normal((10, 128)).astype(np.float32)},
      'norm': {'scale': np.ones(64, np.float32), 'bias': np.zeros(64, np.float32)},
  }


def test_torch_init_is_kaiming_uniform_with_fan_in_and_keeps_zero_layers():
  params = init.torch_init(3, _flax_like())
  for name, fan_in in (('conv', 3 * 3 * 16), ('dense', 256)):
    bound = 1 / np.sqrt(fan_in)  # kaiming_uniform(a=sqrt 5): gain sqrt(1/3) * sqrt(3 / fan_in)
    kernel, bias = params[name]['kernel'], params[name]['bias']
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    # U(-b, b) has std b / sqrt(3); >= 9000 draws estimate it to 0.6%, so 3% is 5 of that
    # (measured 0.8%).
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.03)
    assert bias.std() > 0.4 * bound  # 64-128 draws: loosely uniform, not zero
  np.testing.assert_array_equal(params['zero']['kernel'], 0)
  np.testing.assert_array_equal(params['zero']['bias'], 0)
  np.testing.assert_array_equal(params['norm']['scale'], 1)
  np.testing.assert_array_equal(params['norm']['bias'], 0)
  # N(0, 1): the std of 1,280 draws is known to 0.02, so 0.1 is 5 of that (measured 0.038).
  np.testing.assert_allclose(params['label_emb']['embedding'].std(), 1.0, atol=0.1)
  again = init.torch_init(3, _flax_like())
  np.testing.assert_array_equal(again['conv']['kernel'], params['conv']['kernel'])
  assert not np.array_equal(init.torch_init(4, _flax_like())['conv']['kernel'],
                            params['conv']['kernel'])


def test_flax_default_is_about_1_7x_the_pytorch_std():
  fan_in = 3 * 3 * 16
  torch_std = 1 / np.sqrt(3 * fan_in)
  flax_std = 1 / np.sqrt(fan_in)  # lecun_normal
  np.testing.assert_allclose(flax_std / torch_std, 1.732, rtol=1e-3)


def test_widen_copies_equal_leaves_and_zero_pads_kernel_inputs():
  source = {'input_blocks_0_0': {'kernel': np.ones((3, 3, 4, 8)), 'bias': np.full(8, 2.0)},
            'dense': {'kernel': np.full((5, 6), 3.0)}}
  target = {'input_blocks_0_0': {'kernel': np.zeros((3, 3, 10, 8), np.float32),
                                 'bias': np.zeros(8, np.float32)},
            'dense': {'kernel': np.zeros((5, 6), np.float32)}}
  out = init.widen(source, target)
  kernel = out['input_blocks_0_0']['kernel']
  assert kernel.dtype == np.float32 and kernel.shape == (3, 3, 10, 8)
  np.testing.assert_array_equal(kernel[:, :, :4], 1)
  np.testing.assert_array_equal(kernel[:, :, 4:], 0)
  np.testing.assert_array_equal(out['input_blocks_0_0']['bias'], 2)
  np.testing.assert_array_equal(out['dense']['kernel'], 3)


@pytest.mark.parametrize('change, message', [
    (lambda s: s.pop('dense'), 'missing'),
    (lambda s: s.update(extra={'kernel': np.ones(2)}), 'unexpected'),
    (lambda s: s['dense'].update(kernel=np.ones((5, 7))), r'dense/kernel \(5, 7\)'),
    (lambda s: s['dense'].update(kernel=np.full((5, 6), np.nan)), 'NaN'),
])
def test_widen_rejects_networks_that_do_not_fit(change, message):
  source = {'input_blocks_0_0': {'kernel': np.ones((3, 3, 4, 8))}, 'dense': {'kernel': np.ones((5, 6))}}
  target = {'input_blocks_0_0': {'kernel': np.zeros((3, 3, 10, 8))}, 'dense': {'kernel': np.zeros((5, 6))}}
  change(source)
  with pytest.raises(ValueError, match=message):
    init.widen(source, target, where='g_u.msgpack')
