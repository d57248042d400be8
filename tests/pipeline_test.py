"""The grain loader: order, sharding, per-example randomness, resumption, device prefetch."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from ivid_jax.data import pipeline
from ivid_jax.data.errors import BadExampleError

N, S = 24, 8


def _source(n=N, size=S, labels=True):
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
  depth = rng.uniform(0, 1, (n, size, size, 1)).astype(np.float32)
  return pipeline.ArraySource(rgb, depth, np.arange(n) % 5 if labels else None)


def _loader(source=None, **kwargs):
  kwargs = {'global_batch_size': 4, 'seed': 0, 'shard_index': 0, 'shard_count': 1, **kwargs}
  return pipeline.make_loader(source or _source(), **kwargs)


def _indices(batches):
  return np.concatenate([b['index'] for b in batches])


def test_batch_contents_shapes_and_values():
  source = _source()
  batch = next(_loader(source, conditional=True))
  assert batch['x0'].shape == (4, S, S, 4) and batch['x0'].dtype == np.float32
  assert batch['label'].dtype == np.int32 and batch['rng'].shape == (4, 2)
  assert batch['rng'].dtype == np.uint32
  assert {k: v.shape for k, v in batch['camera'].items()} == {
      'yaw': (4,), 'pitch': (4,), 'radius': (4,), 'target': (4, 3)}
  i = int(batch['index'][1])
  np.testing.assert_allclose(batch['x0'][1, ..., :3], source.rgb[i] / 255 * 2 - 1, atol=1e-6)
  np.testing.assert_allclose(batch['x0'][1, ..., 3:], source.depth[i] * 2 - 1, atol=1e-6)
  assert batch['label'][1] == i % 5


def test_unlabelled_source_gets_no_label():
  batch = next(_loader(_source(labels=False)))
  np.testing.assert_array_equal(batch['label'], pipeline.NO_LABEL)


def test_each_epoch_is_a_permutation_and_seeds_differ():
  steps = pipeline.steps_per_epoch(N, 4)
  batches = pipeline.take(_loader(), 2 * steps)
  first, second = _indices(batches[:steps]), _indices(batches[steps:])
  assert sorted(first) == list(range(N)) and sorted(second) == list(range(N))
  assert not np.array_equal(first, second)  # reshuffled each epoch
  assert [int(b['epoch'][0]) for b in batches] == [0] * steps + [1] * steps
  again = _indices(pipeline.take(_loader(), steps))
  np.testing.assert_array_equal(first, again)
  other = _indices(pipeline.take(_loader(seed=1), steps))
  assert not np.array_equal(first, other)


def test_deterministic_for_a_seed():
  a = pipeline.take(_loader(conditional=True), 3)
  b = pipeline.take(_loader(conditional=True), 3)
  for x, y in zip(a, b):
    jax.tree.map(np.testing.assert_array_equal, x, y)


def test_num_epochs_ends_the_iterator_and_remainder_is_dropped():
  batches = list(_loader(_source(n=10), num_epochs=2))
  assert len(batches) == 2 * (10 // 4)
  assert len(set(_indices(batches[:2]))) == 8


def test_host_shards_are_disjoint_and_cover_the_epoch():
  steps = pipeline.steps_per_epoch(N, 8)
  shards = [pipeline.take(_loader(global_batch_size=8, shard_index=h, shard_count=4), steps)
            for h in range(4)]
  sets = [set(_indices(s)) for s in shards]
  for h in range(4):
    assert len(sets[h]) == steps * 2
    for g in range(h):
      assert not sets[h] & sets[g]
  assert set().union(*sets) == set(range(N))
  # The global batch of a step does not depend on the number of hosts.
  single = pipeline.take(_loader(global_batch_size=8), steps)
  for step in range(steps):
    joined = pipeline.stack_batches([shards[h][step] for h in range(4)])
    np.testing.assert_array_equal(joined['index'], single[step]['index'])


def test_example_randomness_depends_only_on_seed_epoch_and_index():
  # Same example, same epoch: same camera and key, whatever the batching and sharding.
  a = pipeline.take(_loader(conditional=True, global_batch_size=4), pipeline.steps_per_epoch(N, 4))
  b = pipeline.take(_loader(conditional=True, global_batch_size=6, shard_index=1, shard_count=2),
                    pipeline.steps_per_epoch(N, 6))
  by_index = {}
  for batch in a:
    for i, idx in enumerate(batch['index']):
      by_index[int(idx)] = (batch['rng'][i], batch['camera']['yaw'][i], batch['camera']['target'][i])
  for batch in b:
    for i, idx in enumerate(batch['index']):
      rng, yaw, target = by_index[int(idx)]
      np.testing.assert_array_equal(batch['rng'][i], rng)
      assert batch['camera']['yaw'][i] == yaw
      np.testing.assert_array_equal(batch['camera']['target'][i], target)


def test_camera_distribution_follows_the_reference():
  cams = [pipeline.example_camera_and_rng(0, 0, i)['camera'] for i in range(2000)]
  yaw = np.array([c['yaw'] for c in cams])
  radius = np.array([c['radius'] for c in cams])
  target = np.stack([c['target'] for c in cams])
  # 2,000 draws: the standard errors are 0.0024 (yaw's std), 0.0034 (yaw's mean), 0.0022
  # (radius's mean) and 0.0016 (its std), so 0.01 is 3-6 of them (measured differences
  # 0.0016, 0.0016, 0.0018, 0.0009).
  assert abs(yaw.std() - 0.15) < 0.01 and abs(yaw.mean()) < 0.01
  assert abs(radius.mean() - 1.0) < 0.01 and abs(radius.std() - 0.1) < 0.01
  # Standard error 0.0008; measured differences up to 0.0004.
  np.testing.assert_allclose(target.std(axis=0), 0.05, atol=0.004)
  # Keys differ between examples and epochs.
  k = pipeline.example_camera_and_rng(0, 0, 0)['rng']
  assert not np.array_equal(k, pipeline.example_camera_and_rng(0, 1, 0)['rng'])
  assert not np.array_equal(k, pipeline.example_camera_and_rng(0, 0, 1)['rng'])


def test_resume_gives_exactly_the_next_batches():
  it = _loader(conditional=True)
  pipeline.take(it, 7)  # crosses the epoch boundary at 6
  state = pipeline.state_bytes(it)
  expected = pipeline.take(it, 4)
  fresh = _loader(conditional=True)
  pipeline.restore_state(fresh, state)
  for x, y in zip(expected, pipeline.take(fresh, 4)):
    jax.tree.map(np.testing.assert_array_equal, x, y)


def test_resume_through_orbax(tmp_path):
  ocp = pytest.importorskip('orbax.checkpoint')
  it = _loader()
  pipeline.take(it, 3)
  with ocp.CheckpointManager(tmp_path / 'ckpt') as mngr:
    mngr.save(3, args=ocp.args.Composite(data=pipeline.orbax_save_args(it)))
    mngr.wait_until_finished()
    expected = _indices(pipeline.take(it, 2))
    fresh = _loader()
    mngr.restore(3, args=ocp.args.Composite(data=pipeline.orbax_restore_args(fresh)))
  np.testing.assert_array_equal(_indices(pipeline.take(fresh, 2)), expected)


def test_device_prefetch_splits_the_batch_over_8_devices_and_resumes():
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ('data',))
  it = pipeline.device_prefetch(_loader(global_batch_size=8, conditional=True), mesh, size=2)
  host = pipeline.take(_loader(global_batch_size=8, conditional=True), 3)
  batch = next(it)
  x0 = batch['x0']
  assert isinstance(x0, jax.Array) and x0.shape == (8, S, S, 4)
  assert x0.sharding.spec == PartitionSpec('data')
  assert len(x0.addressable_shards) == 8
  assert {s.data.shape for s in x0.addressable_shards} == {(1, S, S, 4)}
  assert {s.device for s in x0.addressable_shards} == set(jax.devices())
  assert batch['camera']['target'].shape == (8, 3)
  np.testing.assert_array_equal(np.asarray(x0), host[0]['x0'])
  # The state is that of the last batch yielded, not of the buffered ones.
  state = it.get_state()
  ref = _loader(global_batch_size=8, conditional=True)
  next(ref)
  assert state == ref.get_state()
  np.testing.assert_array_equal(np.asarray(next(it)['index']), host[1]['index'])
  it.set_state(state)
  np.testing.assert_array_equal(np.asarray(next(it)['index']), host[1]['index'])
  np.testing.assert_array_equal(np.asarray(next(it)['index']), host[2]['index'])


def test_first_view_adapter():
  src = _source()
  multi = pipeline.ArraySource(np.stack([src.rgb, 255 - src.rgb], 1),
                               np.stack([src.depth, 1 - src.depth], 1))
  example = pipeline.first_view(multi)[3]
  np.testing.assert_array_equal(example['rgb'], src.rgb[3])
  np.testing.assert_array_equal(example['depth'], src.depth[3])
  batch = next(_loader(pipeline.first_view(multi)))
  assert batch['x0'].shape == (4, S, S, 4)


def test_bad_examples_raise_naming_the_example():
  src = _source()
  src.depth[5, 0, 0, 0] = np.nan
  with pytest.raises(BadExampleError, match=r'ArraySource.*\[5\].*finite'):
    list(_loader(src, num_epochs=1))
  multi = pipeline.ArraySource(np.stack([src.rgb] * 2, 1), np.stack([src.depth] * 2, 1))
  with pytest.raises(BadExampleError, match='first_view'):
    _loader(multi)
  with pytest.raises(ValueError, match='not divisible'):
    _loader(global_batch_size=6, shard_count=4)


def test_reads_a_tfds_data_source(tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')

  class TinyRgbd(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'rgb': tfds.features.Tensor(shape=(S, S, 3), dtype=np.uint8),
          'depth': tfds.features.Tensor(shape=(S, S, 1), dtype=np.float32),
          'label': tfds.features.Tensor(shape=(), dtype=np.int64)}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples()}

    def _generate_examples(self):
      src = _source()
      for i in range(N):
        yield i, src[i] | {'label': i}

  builder = TinyRgbd(data_dir=str(tmp_path), file_format='array_record')
  builder.download_and_prepare()
  source = builder.as_data_source(split='train')
  batch = next(_loader(source))
  ref = _source()
  # TFDS shuffles examples when writing: the label says which one this is.
  for i, (idx, label) in enumerate(zip(batch['index'], batch['label'])):
    assert source[int(idx)]['label'] == label
    np.testing.assert_allclose(batch['x0'][i, ..., :3], ref.rgb[label] / 255 * 2 - 1, atol=1e-6)
  assert len(set(batch['label'])) == 4
