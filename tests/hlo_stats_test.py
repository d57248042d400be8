"""Counting a compiled program's collectives and memory (`ivid_jax.hlo_stats`)."""

import os

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from ivid_jax import hlo_stats
from ivid_jax import main as main_lib

# Hand-written lines in the forms XLA prints (synchronous, async, tuple-shaped).
HLO = """
HloModule m
ENTRY %main {
  %p = f32[32,128]{1,0} parameter(0)
  %all-gather = f32[256,128]{1,0} all-gather(%p), channel_id=1, dimensions={0}
  %all-reduce.2 = (f32[], f32[128,256]{1,0}) all-reduce(%a, %b), channel_id=2, to_apply=%add
  %rs = bf16[16,64]{1,0} reduce-scatter(%c), channel_id=3, dimensions={0}, to_apply=%add
  %ags = (f32[8,4]{1,0}, f32[64,4]{1,0}) all-gather-start(%d), channel_id=4, dimensions={0}
  %agd = f32[64,4]{1,0} all-gather-done(%ags)
  %cps = (f32[10]{0}, f32[10]{0}, u32[], u32[]) collective-permute-start(%e), channel_id=5
  ROOT %a2a = s32[8,2]{1,0} all-to-all(%f), channel_id=6, dimensions={0}
  %not = f32[1000]{0} add(%x, %y), metadata={op_name="all-reduce"}
}
"""


# A loop of 3 micro-batches whose body all-reduces 1 KiB, and a loop of unknown length.
LOOPS = """
%body (p: (s32[], f32[256])) -> (s32[], f32[256]) {
  %ar = f32[256]{0} all-reduce(%g), channel_id=1, to_apply=%add
}
%cond (p: (s32[], f32[256])) -> pred[] {
  %lt = pred[] compare(%i, %n), direction=LT
}
%body2 (p: (s32[], f32[8])) -> (s32[], f32[8]) {
  %ag = f32[8]{0} all-gather(%h), channel_id=2, dimensions={0}
}
ENTRY %main (x: f32[256]) -> f32[256] {
  %w = (s32[], f32[256]{0}) while(%t), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
  %w2 = (s32[], f32[8]{0}) while(%t2), condition=%cond, body=%body2
  ROOT %ar2 = f32[16]{0} all-reduce(%y), channel_id=3, to_apply=%add
}
"""


def test_collectives_in_loops_count_once_per_iteration():
  c = hlo_stats.collective_bytes(LOOPS, num_devices=8)
  assert c['all-reduce'] == hlo_stats.Collective(3 + 1, 3 * 1024 + 64, 0)
  # Unknown trip count: counted once, and flagged.
  assert c['all-gather'] == hlo_stats.Collective(1, 32, 1)


def test_shape_bytes_of_arrays_and_tuples():
  assert hlo_stats.shape_bytes('f32[256,128]{1,0}') == [131072]
  assert hlo_stats.shape_bytes('(f32[], bf16[3,5]{1,0}, pred[7])') == [4, 30, 7]


def test_collective_bytes_of_handwritten_hlo():
  c = hlo_stats.collective_bytes(HLO, num_devices=8)
  # all-gather: the gathered result 256 x 128 x 4, plus the async one's result 64 x 4 x 4.
  assert c['all-gather'] == hlo_stats.Collective(2, 131072 + 1024)
  assert c['all-reduce'] == hlo_stats.Collective(1, 4 + 131072)
  # reduce-scatter: its operand, the result's 16 x 64 x 2 bytes times 8 devices.
  assert c['reduce-scatter'] == hlo_stats.Collective(1, 16384)
  assert c['collective-permute'] == hlo_stats.Collective(1, 40)
  assert c['all-to-all'] == hlo_stats.Collective(1, 64)


def test_compiled_fsdp_matmul_gathers_the_weight_and_reduces_its_gradient():
  # conftest gives 8 simulated CPU devices.
  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  sharded, replicated = NamedSharding(mesh, P('data')), NamedSharding(mesh, P())

  def step(w, x):
    full = jax.lax.with_sharding_constraint(w, replicated)  # FSDP's gather
    g = jax.grad(lambda v: jnp.sum(jnp.tanh(x @ v)))(full)
    return jax.lax.with_sharding_constraint(g, sharded)  # FSDP's reduce-scatter

  w = jax.ShapeDtypeStruct((256, 128), jnp.float32, sharding=sharded)
  x = jax.ShapeDtypeStruct((64, 256), jnp.float32, sharding=sharded)
  stats = hlo_stats.compiled_stats(jax.jit(step).lower(w, x).compile(), num_devices=8)
  full_bytes = 256 * 128 * 4
  assert stats.collectives['all-gather'].bytes == full_bytes
  # XLA:CPU: the gradient's reduce-scatter is an all-reduce of the whole gradient, then a slice.
  reduced = stats.collectives['all-reduce'].bytes + stats.collectives['reduce-scatter'].bytes
  assert reduced == full_bytes
  # Per device: 1/8 of w and of x in, 1/8 of the gradient out.
  assert stats.argument_bytes == (256 * 128 + 64 * 256) * 4 // 8
  assert stats.output_bytes == full_bytes // 8
  # x @ w, its gradient: 2 x (8 rows x 256 x 128) multiply-adds at least.
  assert stats.flops >= 2 * 2 * 8 * 256 * 128


def test_per_device_bytes_of_sharded_and_replicated_leaves():
  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  tree = {'w': jax.ShapeDtypeStruct((64, 3), jnp.float32),
          'b': jax.ShapeDtypeStruct((3,), jnp.int8)}
  shardings = {'w': NamedSharding(mesh, P('data')), 'b': NamedSharding(mesh, P())}
  assert hlo_stats.per_device_bytes(tree, shardings) == 8 * 3 * 4 + 3
  assert hlo_stats.tree_bytes(tree) == 64 * 3 * 4 + 3


@pytest.mark.parametrize('args', [['--dry_run_devices=4'], ['--dry_run_devices', '4']])
def test_dry_run_devices_sets_the_cpu_device_count(monkeypatch, args):
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8 --xla_foo=1')
  monkeypatch.delenv('JAX_PLATFORMS', raising=False)
  main_lib.simulate_devices(['--config=c.py'] + args)
  assert os.environ['XLA_FLAGS'].split() == ['--xla_foo=1',
                                             '--xla_force_host_platform_device_count=4']
  assert os.environ['JAX_PLATFORMS'] == 'cpu'


def test_no_dry_run_devices_leaves_the_environment(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_foo=1')
  main_lib.simulate_devices(['--dry_run', '--config=c.py'])
  assert os.environ['XLA_FLAGS'] == '--xla_foo=1'


def test_compiled_scan_all_reduces_once_per_micro_batch():
  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))

  def accumulate(w, x):  # gradient accumulation over 4 micro-batches split over the devices
    def body(total, micro_batch):
      return total + jax.grad(lambda v: jnp.sum(jnp.tanh(micro_batch @ v)))(w), None
    return jax.lax.scan(body, jnp.zeros_like(w), x)[0]

  w = jax.ShapeDtypeStruct((256, 128), jnp.float32, sharding=NamedSharding(mesh, P()))
  x = jax.ShapeDtypeStruct((4, 64, 256), jnp.float32, sharding=NamedSharding(mesh, P(None, 'data')))
  stats = hlo_stats.compiled_stats(jax.jit(accumulate).lower(w, x).compile(), num_devices=8)
  reduced = stats.collectives['all-reduce']
  assert (reduced.count, reduced.bytes, reduced.unknown_trips) == (4, 4 * 256 * 128 * 4, 0)
