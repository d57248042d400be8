"""EMA of the parameters: closed forms of the update, several rates, the warm-up."""

import jax.numpy as jnp
import numpy as np

from ivid_jax.training import ema


def test_update_is_the_convex_combination_for_every_rate():
  params = {'w': jnp.array([1.0, 2.0])}
  avgs = ema.init(params, (0.9, 0.5))
  new = {'w': jnp.array([3.0, -2.0])}
  out = ema.update(avgs, new, (0.9, 0.5), count=jnp.int32(0))
  np.testing.assert_allclose(out[0]['w'], [0.9 * 1 + 0.1 * 3, 0.9 * 2 - 0.1 * 2], rtol=1e-6)
  np.testing.assert_allclose(out[1]['w'], [2.0, 0.0], rtol=1e-6)


def test_warmup_decay_is_min_of_d_and_1_plus_n_over_10_plus_n():
  for n, expected in ((0, 0.1), (10, 11 / 20), (990, 0.99), (10_000, 0.99)):
    np.testing.assert_allclose(ema.decay_at(0.99, jnp.int32(n), warmup=True), expected,
                               rtol=1e-6)
  assert float(ema.decay_at(0.9999, jnp.int32(5), warmup=False)) == np.float32(0.9999)


def test_warm_up_forgets_the_initial_weights_quickly():
  # A constant target after the start: without warm-up 0.999 keeps exp(-n/1000) of
  # the initial weights; with it the weight of the start is prod_k (1 + k)/(10 + k).
  avg = ema.init({'w': jnp.zeros(())}, (0.999,))
  plain = avg
  for n in range(5):
    avg = ema.update(avg, {'w': jnp.ones(())}, (0.999,), jnp.int32(n), warmup=True)
    plain = ema.update(plain, {'w': jnp.ones(())}, (0.999,), jnp.int32(n))
  start_weight = np.prod([(1 + k) / (10 + k) for k in range(5)])  # 5.0e-4
  # float32: 1 - avg is known to ~6e-8 absolute, i.e. 1e-4 of 5e-4.
  np.testing.assert_allclose(1 - float(avg[0]['w']), start_weight, rtol=1e-3)
  np.testing.assert_allclose(1 - float(plain[0]['w']), 0.999 ** 5, rtol=1e-6)  # measured 6e-8
