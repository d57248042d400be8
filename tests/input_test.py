"""Training data from config.input: the datasets, building synthetic_rgbd on first use, errors."""

import numpy as np
import pytest

from ivid_jax.data import pipeline
from ivid_jax.data import synthetic_rgbd
from ivid_jax.training import input as input_lib


def test_random_smooth_source():
  source = input_lib.make_source(dataset='random_smooth', image_size=16, num_examples=5)
  assert len(source) == 5 and source[0]['rgb'].shape == (16, 16, 3)
  assert source[0]['rgb'].dtype == np.uint8


@pytest.mark.slow  # compiles the scene renderer: about a minute on 2 cores
def test_synthetic_rgbd_is_built_on_first_use(tmp_path, capsys):
  config = synthetic_rgbd.SyntheticRgbdConfig(name='tiny_train', resolution=32, num_train=4,
                                              num_test=2, batch_size=4)
  source = input_lib.make_source(dataset='synthetic_rgbd', image_size=32, tfds_config=config,
                                 data_dir=str(tmp_path), view=1)
  assert 'Building synthetic_rgbd/tiny_train' in capsys.readouterr().out
  assert len(source) == 4 and source[0]['rgb'].shape == (32, 32, 3)
  stored = synthetic_rgbd.generate(config, 'train', 0, 4)
  index = [i for i in range(4) if stored['scene_id'][i] == 0][0]
  np.testing.assert_array_equal(source[0]['rgb'], stored['rgb'][index, 1])  # view 1
  again = input_lib.make_source(dataset='synthetic_rgbd', image_size=32, tfds_config=config,
                                data_dir=str(tmp_path))
  assert 'Building' not in capsys.readouterr().out and len(again) == 4


@pytest.mark.parametrize('fields, error, message', [
    (dict(dataset='mnist'), ValueError, 'input.dataset must be one of'),
    (dict(dataset='random_smooth'), ValueError, 'num_examples'),
    (dict(dataset='rgbd_folder', root='/nonexistent'), FileNotFoundError, 'input.root'),
    (dict(dataset='imagenet_rgbd', data_dir='/nonexistent'), FileNotFoundError, 'not prepared'),
])
def test_bad_input_settings_are_named(fields, error, message):
  with pytest.raises(error, match=message):
    input_lib.make_source(image_size=16, **fields)


def test_resolution_mismatch_is_an_error():
  source = pipeline.random_smooth_source(2, 32)
  with pytest.raises(ValueError, match='32 px but the model is 16 px'):
    input_lib.check_resolution(source, 16)
