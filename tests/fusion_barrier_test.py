"""The CPU fusion barrier: values unchanged, a real loop on CPU, nothing elsewhere."""

import jax
import jax.numpy as jnp
import numpy as np

from ivid_jax.geometry import fusion_barrier


def _hlo(fn, *args) -> str:
  return jax.jit(fn).lower(*args).as_text()


def test_values_pass_through_and_cpu_gets_a_loop():
  x = jnp.arange(12.0).reshape(3, 4)
  tree = {'a': x, 'b': x > 4}
  out = jax.jit(fusion_barrier.materialize)(tree)
  np.testing.assert_array_equal(out['a'], x)
  np.testing.assert_array_equal(out['b'], x > 4)
  assert 'while' in _hlo(fusion_barrier.materialize, tree)


def test_other_backends_get_the_tree_untouched(monkeypatch):
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  x = jnp.ones((4,))
  assert 'while' not in _hlo(lambda v: fusion_barrier.materialize(v) * 2, x)
