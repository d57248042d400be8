"""The optimiser: the authors' AdamW by default, warm-up, cosine decay and clipping as options."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ivid_jax.training import state


def test_default_is_the_authors_adamw():
  params = {'w': jnp.array([1.0, -2.0, 3.0])}
  grads = {'w': jnp.array([0.5, 0.1, -4.0])}
  ours = state.make_optimizer(lr=1e-4, total_steps=10)
  ref = optax.adamw(1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
  u1, _ = ours.update(grads, ours.init(params), params)
  u2, _ = ref.update(grads, ref.init(params), params)
  np.testing.assert_allclose(u1['w'], u2['w'], rtol=1e-6)
  # Adam's first step moves every coordinate by lr (the sign of the gradient).
  # Exactly, but for Adam's eps: lr |g| / (|g| + 1e-8) (measured 6.7e-6 off).
  np.testing.assert_allclose(u1['w'], -1e-4 * np.sign(grads['w']), rtol=1e-4)


def test_schedules():
  lr = state.learning_rate(lr=1.0, total_steps=110, warmup_steps=10, schedule='cosine')
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(60), lr(110)], [0, 0.5, 1, 0.5, 0],
                             atol=1e-6)
  const = state.learning_rate(lr=2.0, total_steps=0)
  assert float(const(0)) == float(const(10 ** 6)) == 2.0
  with pytest.raises(ValueError, match="'constant' or 'cosine'"):
    state.learning_rate(lr=1.0, total_steps=1, schedule='linear')


def test_clipping_bounds_the_global_norm():
  tx = state.make_optimizer(lr=1.0, total_steps=1, grad_clip_norm=1.0, b1=0.0, b2=0.0, eps=0.0)
  params = {'w': jnp.zeros(2)}
  # With b1 = b2 = eps = 0 Adam returns g / |g| elementwise: check the clip through
  # the state instead, whose first moment is (1 - b1) g = the clipped gradient.
  _, opt = tx.update({'w': jnp.array([30.0, 40.0])}, tx.init(params), params)
  mu = jax.tree.leaves(opt[1][0].mu)[0]
  np.testing.assert_allclose(mu, [0.6, 0.8], rtol=1e-6)
