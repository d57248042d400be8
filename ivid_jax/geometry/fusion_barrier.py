"""A fusion barrier that holds on XLA:CPU.

XLA fuses elementwise producers into every consumer. That is usually right,
but when a cheap-looking producer (a gather chain, per-face setup) feeds a
consumer that reads each of its elements many times (a window of candidate
samples per face, the taps of a resampling filter), the producer is recomputed
for every read. `lax.optimization_barrier` does not prevent this on CPU (it is
expanded away before fusion), so `materialize` routes values through the state
of a while loop, which XLA always keeps in buffers.
"""

from __future__ import annotations

from typing import TypeVar

import jax
import jax.numpy as jnp
from jax import lax

T = TypeVar('T')


def materialize(tree: T) -> T:
  """Returns `tree` unchanged, computed once into buffers on XLA:CPU (else untouched).

  The loop runs zero times unless the first element of the first leaf is
  NaN, and then once; its body never changes the values (the counter is never
  negative) but XLA cannot prove either, so the loop and its buffers stay.
  GPU and TPU compilers weigh recomputation against memory traffic themselves
  and gain nothing from a barrier they cannot see through, so on any backend
  but the CPU (decided when tracing, by `jax.default_backend()`) this returns
  `tree` as it is.
  """
  leaves = jax.tree.leaves(tree)
  if not leaves or jax.default_backend() != 'cpu':
    return tree
  first = jnp.ravel(leaves[0])[0].astype(jnp.float32)
  trips = jnp.isnan(first).astype(jnp.int32)

  def body(state):
    i, t = state
    keep = lambda v: jnp.where(i >= 0, v, ~v if v.dtype == jnp.bool_ else v + 1)
    return i + 1, jax.tree.map(keep, t)

  return lax.while_loop(lambda state: state[0] < trips, body, (jnp.int32(0), tree))[1]
