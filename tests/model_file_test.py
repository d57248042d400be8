"""Model files: what export and convert-checkpoint write and the sampler reads."""

import os

import jax
import numpy as np
import pytest

from ivid_jax.models import model_file
from ivid_jax.models import unet

_FIELDS = dict(image_size=16, in_channels=10, model_channels=16, out_channels=4,
               num_res_blocks=1, attention_resolutions=(8,), channel_mult=(1, 2), num_groups=8,
               num_head_channels=8, num_classes=4, has_null_class=True)


@pytest.fixture(scope='module')
def params():
  # The UNet's parameter tree with random values: init's shapes without running it (the file
  # format is what is tested, not the network).
  model = unet.UNet(**_FIELDS)
  x = np.zeros((1, 16, 16, 10), np.float32)
  t = np.zeros((1,), np.int32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x, t, t)['params']
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def test_round_trip_keeps_fields_kind_and_every_array(tmp_path, params):
  path = model_file.save(tmp_path / 'net.msgpack', unet=_FIELDS, params=params, step=7)
  loaded = model_file.load(path)
  assert loaded.kind == 'cond' and loaded.meta['step'] == 7
  assert loaded.model.channel_mult == (1, 2) and loaded.model.num_classes == 4
  assert loaded.diffusion == {'schedule': 'linear', 'num_steps': 1000}
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded.params)):
    np.testing.assert_array_equal(np.asarray(a), b)
  assert not [f for f in os.listdir(tmp_path) if f.endswith('.partial')]


def test_wrong_kind_missing_file_and_foreign_file_are_named(tmp_path, params):
  path = model_file.save(tmp_path / 'net.msgpack', unet=_FIELDS, params=params)
  with pytest.raises(ValueError, match='net.msgpack: this is the cond network'):
    model_file.load(path, expect_kind='uncond')
  with pytest.raises(FileNotFoundError, match='nope.msgpack'):
    model_file.load(tmp_path / 'nope.msgpack')
  (tmp_path / 'junk.msgpack').write_bytes(b'\x00not msgpack at all')
  with pytest.raises(ValueError, match='junk.msgpack: not an ivid-jax model file'):
    model_file.load(tmp_path / 'junk.msgpack')


def test_params_that_do_not_fit_the_unet_are_refused(tmp_path, params):
  bad = jax.tree.map(np.asarray, params)
  bad['out_2'] = {'bias': np.zeros(3, np.float32), 'kernel': bad['out_2']['kernel']}
  with pytest.raises(ValueError, match=r'out_2/bias \(3,\)'):
    model_file.save(tmp_path / 'bad.msgpack', unet=_FIELDS, params=bad)
  assert not os.path.exists(tmp_path / 'bad.msgpack')
  with pytest.raises(ValueError, match='in_channels=5'):
    model_file.save(tmp_path / 'bad.msgpack', unet={**_FIELDS, 'in_channels': 5}, params=params)
