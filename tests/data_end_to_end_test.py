"""The data path end to end: a built synthetic_rgbd dataset -> grain loader -> training pairs."""

import numpy as np

from ivid_jax.data import conditional
from ivid_jax.data import pipeline
from ivid_jax.data import synthetic_rgbd

_TINY = synthetic_rgbd.SyntheticRgbdConfig(name='tiny_e2e', resolution=32, num_train=6,
                                           num_test=2, batch_size=6)


def test_synthetic_dataset_through_the_loader_to_training_pairs(tmp_path):
  builder = synthetic_rgbd.SyntheticRgbd(config=_TINY, data_dir=str(tmp_path))
  builder.download_and_prepare(file_format='array_record')
  train = builder.as_data_source('train')
  source = pipeline.FirstView(train)

  loader = pipeline.make_loader(source, global_batch_size=4, seed=3, conditional=True,
                                num_epochs=1)
  batch = next(iter(loader))
  assert batch['x0'].shape == (4, 32, 32, 4) and batch['x0'].dtype == np.float32
  # x0 is view 0 of the stored scene, mapped to [-1, 1]
  for i, index in enumerate(batch['index']):
    ex = train[int(index)]
    np.testing.assert_allclose(batch['x0'][i, ..., :3], ex['rgb'][0] / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(batch['x0'][i, ..., 3:], ex['depth'][0] * 2 - 1, atol=1e-6)
    assert batch['label'][i] == ex['label']

  pair = conditional.pair_from_batch(batch)
  mask, mask_rgb, y = (np.asarray(pair[k]) for k in ('mask', 'mask_rgb', 'y'))
  assert y.shape == (4, 32, 32, 4)
  assert set(np.unique(mask)) <= {0.0, 1.0} and np.all(mask_rgb <= mask)
  np.testing.assert_array_equal(y[np.broadcast_to(mask, y.shape) == 0], -1.0)
  # small training cameras keep most of a textured scene visible
  assert 0.2 < mask.mean() < 1.0
  # where the depth survived, it is the warped scene's depth, close to x0's near the centre
  both = (mask[..., 0] > 0)
  assert np.median(np.abs(y[..., 3] - np.asarray(pair['x0'])[..., 3])[both]) < 0.05
