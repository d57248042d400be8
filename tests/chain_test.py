"""The sequential sampler: one compiled scan for every view, per-scene keys, every view set."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivid_jax.geometry import cameras
from ivid_jax.sampling import chain
from ivid_jax.sampling import sampler
from ivid_jax.sampling import viewsets

_SETTINGS = chain.Settings(steps_uncond=2, steps_cond=2)


def _counting(eps_fn, traces):
  def counted(aux, key, x_t, t):
    traces.append(x_t.shape)  # runs once per trace, never per call of the compiled chain
    return eps_fn(aux, key, x_t, t)
  return counted


@pytest.fixture(scope='module')
def nets(tiny_model_files):
  loaded = sampler.load_networks(tiny_model_files['uncond'], tiny_model_files['cond'],
                                 guidance=1.0)
  traces = {'uncond': [], 'cond': []}
  wrap = lambda n, k: chain.Network(_counting(n.eps_fn, traces[k]), n.params, n.schedule)
  return wrap(loaded.uncond, 'uncond'), wrap(loaded.cond, 'cond'), traces


def _run(nets, seeds, viewset='3x9'):
  keys = sampler.scene_keys(seeds)
  vs = viewsets.make(viewset, keys)
  out = chain.chain(nets[0], nets[1], keys, jnp.asarray(seeds, jnp.int32) % 4,
                    cameras.orbit_camera(vs.yaw, vs.pitch), image_size=16, settings=_SETTINGS)
  return jax.tree.map(np.asarray, out)


@pytest.fixture(scope='module')
def runs(nets):
  grid = viewsets.make('3x9', num_scenes=1)
  custom = list(zip(grid.yaw[0, :9].tolist(), grid.pitch[0, :9].tolist()))
  custom += [(0.5 + 0.01 * i, 0.2) for i in range(18)]  # other cameras after view 8
  return {'a': _run(nets, [0, 1]), 'again': _run(nets, [0, 1]), 'swapped': _run(nets, [1, 0]),
          'other_later_views': _run(nets, [0, 1], custom)}


def test_one_trace_and_one_compilation_for_every_view_and_batch(nets, runs):
  _, _, traces = nets
  # 26 conditional views and 4 calls: the denoiser was traced once per network.
  assert len(traces['cond']) == 1 and len(traces['uncond']) == 1
  assert chain._chain_jit._cache_size() == 1  # pylint: disable=protected-access
  assert runs['a'].views.shape == (2, 27, 16, 16, 4)
  assert runs['a'].conditions.mask.shape == (2, 26, 16, 16, 1)


def test_a_seed_gives_the_same_scene_in_any_batch_position(runs):
  np.testing.assert_array_equal(runs['a'].views, runs['again'].views)
  # Batch neighbours do not matter. XLA may vectorise the two positions differently, so
  # allow float rounding (measured max difference: 0).
  np.testing.assert_allclose(runs['swapped'].views[0], runs['a'].views[1], rtol=1e-5, atol=1e-5)
  assert not np.allclose(runs['a'].views[0], runs['a'].views[1])


def test_a_view_does_not_depend_on_the_views_after_it(runs):
  np.testing.assert_array_equal(runs['other_later_views'].views[:, :9], runs['a'].views[:, :9])
  assert not np.allclose(runs['other_later_views'].views[:, 9:], runs['a'].views[:, 9:])


def test_conditions_come_from_the_earlier_views(runs):
  cond = runs['a'].conditions
  mask, mask_rgb = cond.mask, cond.mask_rgb
  assert np.all(mask_rgb <= mask) and set(np.unique(mask)) <= {0.0, 1.0}
  # The tiny random networks make noise-like views, yet neighbouring cameras share pixels.
  assert mask.mean() > 0.0
  np.testing.assert_array_equal(cond.color * (1 - mask_rgb), 0.0)


def test_classes_and_seeds_are_checked():
  with pytest.raises(ValueError, match='class labels must be in 0..3'):
    sampler.choose_classes([0, 1], '2,7', 4)
  with pytest.raises(ValueError, match='2 classes given for 3 seeds'):
    sampler.choose_classes([0, 1, 2], '1,2', 4)
  np.testing.assert_array_equal(sampler.choose_classes([5, 6, 9], 'mod', 4), [1, 2, 1])
  np.testing.assert_array_equal(sampler.choose_classes([5, 6, 9], 'uniform', 4), [0, 1, 2])
  np.testing.assert_array_equal(sampler.choose_classes([5, 6], '-1', 4, allow_null=True), [-1, -1])
  assert sampler.choose_classes([1], None, None) is None
  assert sampler.parse_int_list('0-3,7') == [0, 1, 2, 3, 7]
