"""`ivid-jax train --dry_run`: whether a config fits a device, how it shards, what a step costs.

Builds everything the run would build, as abstract shapes: the params,
optimiser state and EMAs from `train.make_initial_state` (the trainer's own
`jax.eval_shape` of its state creation) laid out by `parallel.state_shardings`
(replicated, or FSDP), and the loader's global batch split over the mesh.
Then it lowers and compiles the trainer's jitted `train_step` (the same
`train.jit_train_step` a run calls) for the run's mesh and reads the compiled
program's per-device memory, FLOPs and collectives (`hlo_stats`). No weights
are allocated and nothing is written.

Without the devices at hand, `ivid-jax train --dry_run --dry_run_devices=N`
compiles for N simulated CPU devices (set before JAX starts, in `main`): the
sharding, the per-device state and the collectives are those of N
accelerators; the memory analysis and the FLOPs are XLA:CPU's (docs/performance.md,
"Dry run").
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from ivid_jax import hlo_stats
from ivid_jax.data import pipeline
from ivid_jax.training import checkpoint
from ivid_jax.training import parallel
from ivid_jax.training import state as state_lib
from ivid_jax.training import train


@dataclasses.dataclass(frozen=True)
class Report:
  """A dry run of one config's training step; byte and FLOP figures are per device.

  params_bytes, opt_bytes, ema_bytes: the state as sharded (the largest shard).
  *_total_bytes: the same unsharded (one full copy).
  flops_per_step, bytes_per_step: XLA's cost analysis, which counts a loop body
    once, times the micro-batches (optim.grad_accum_steps): the optimiser
    update outside the loop is then counted k times, a few GFLOP of a step's
    tens of TFLOP.
  """
  config_name: str
  kind: str
  num_params: int
  platform: str
  device_kind: str
  num_devices: int
  fsdp: bool
  global_batch: int
  per_device_batch: int
  accum_steps: int
  compute_dtype: str
  image_size: int
  params_bytes: int
  opt_bytes: int
  ema_bytes: int
  params_total_bytes: int
  opt_total_bytes: int
  ema_total_bytes: int
  compile_seconds: float
  flops_per_step: float
  bytes_per_step: float
  compiled: hlo_stats.CompiledStats

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d['compiled'] = self.compiled.to_json()
    return d


def abstract_batch(config: ml_collections.ConfigDict, image_size: int, global_batch: int,
                   mesh: jax.sharding.Mesh) -> dict[str, Any]:
  """The loader's global batch (`pipeline.make_loader`) as ShapeDtypeStructs split over 'data'.

  x0 float32 [B, N, N, 4], label int32 [B], index and epoch int32 [B] (index is
  int64 on the host, int32 on device without x64) and, for G_c, the camera
  ({yaw, pitch, radius} float32 [B], target float32 [B, 3]) and the augmentation
  key data uint32 [B, 2] of `pipeline.example_camera_and_rng`.
  """
  example: dict[str, Any] = {
      'x0': np.zeros((image_size, image_size, 4), np.float32), 'label': np.int32(0),
      'index': np.int32(0), 'epoch': np.int32(0)}
  if config.kind == 'cond':
    example.update(pipeline.example_camera_and_rng(0, 0, 0))
  sharding = parallel.batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((global_batch,) + np.shape(x), np.asarray(x).dtype,
                                     sharding=sharding), example)


def dry_run(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None,
            config_name: str = '') -> Report:
  """Compiles the training step of `config` for `mesh` (default: every device) and measures it."""
  train.check_config(config)
  mesh = parallel.make_mesh() if mesh is None else mesh
  n = mesh.shape[parallel.AXIS]
  model = checkpoint.make_model(config)
  cfg = train.step_config(config)
  # train.global_batch_size, for the mesh given rather than every device.
  global_batch = (int(config.input.batch_size) if config.input.get('batch_size', 0)
                  else int(config.input.per_device_batch_size) * n)
  parallel.check_batch(global_batch, mesh, cfg.accum_steps)

  abstract, shardings, _ = train.make_initial_state(config, model, mesh)
  state = checkpoint.abstract_with_shardings(abstract, shardings)
  batch = abstract_batch(config, model.image_size, global_batch, mesh)
  step = train.jit_train_step(model, cfg, train.optim_settings(config), mesh)
  t0 = time.monotonic()
  compiled = step.lower(state, batch).compile()
  seconds = time.monotonic() - t0

  device = mesh.devices.flat[0]
  stats = hlo_stats.compiled_stats(compiled, n)
  return Report(
      config_name=config_name, kind=config.kind,
      num_params=state_lib.param_count(abstract.params), platform=device.platform,
      device_kind=device.device_kind, num_devices=n, fsdp=cfg.fsdp, global_batch=global_batch,
      per_device_batch=global_batch // n, accum_steps=cfg.accum_steps,
      compute_dtype=str(config.get('compute_dtype', 'float32')), image_size=model.image_size,
      params_bytes=hlo_stats.per_device_bytes(abstract.params, shardings.params),
      opt_bytes=hlo_stats.per_device_bytes(abstract.opt_state, shardings.opt_state),
      ema_bytes=hlo_stats.per_device_bytes(abstract.ema, shardings.ema),
      params_total_bytes=hlo_stats.tree_bytes(abstract.params),
      opt_total_bytes=hlo_stats.tree_bytes(abstract.opt_state),
      ema_total_bytes=hlo_stats.tree_bytes(abstract.ema), compile_seconds=seconds,
      flops_per_step=stats.flops * cfg.accum_steps,
      bytes_per_step=stats.bytes_accessed * cfg.accum_steps, compiled=stats)


def format_report(r: Report) -> str:
  """The dry run's table (per device), for the console."""
  h = hlo_stats.human
  c = r.compiled
  name = f' ({r.config_name})' if r.config_name else ''
  layout = 'FSDP (params, optimiser state, EMA sharded)' if r.fsdp else 'replicated'
  rows = [
      ('network', f'{"G_c" if r.kind == "cond" else "G_u"}{name}, {r.num_params:,} params, '
                  f'{r.image_size} px, compute {r.compute_dtype}'),
      ('devices', f'{r.num_devices} x {r.platform} ({r.device_kind}), mesh (data,), {layout}'),
      ('batch', f'{r.per_device_batch} per device, {r.global_batch} global'
                + (f', {r.accum_steps} micro-batches' if r.accum_steps > 1 else '')),
      ('params', f'{h(r.params_bytes)}  (of {h(r.params_total_bytes)})'),
      ('optimiser state', f'{h(r.opt_bytes)}  (of {h(r.opt_total_bytes)})'),
      ('EMA', f'{h(r.ema_bytes)}  (of {h(r.ema_total_bytes)})'),
      ('compiled: arguments', h(c.argument_bytes)),
      ('compiled: outputs', f'{h(c.output_bytes)}  ({h(c.alias_bytes)} of them donated)'),
      ('compiled: temporaries', h(c.temp_bytes)),
      ('memory', f'{h(c.peak_bytes)}  (arguments + outputs + temporaries - donated)'),
      ('FLOPs per step', f'{r.flops_per_step:.4g}  ({h(r.flops_per_step, "FLOP")})'
                         + (f', the micro-batch loop counted {r.accum_steps} times'
                            if r.accum_steps > 1 else '')),
      ('bytes accessed per step', h(r.bytes_per_step)),
  ]
  for kind, coll in c.collectives.items():
    unknown = (f', {coll.unknown_trips} in loops of unknown length counted once'
               if coll.unknown_trips else '')
    rows.append((f'{kind} per step', f'{h(coll.bytes)} in {coll.count} op(s){unknown}'))
  lines = hlo_stats.dry_run_lines('trained', 'compiled', r.compile_seconds, rows)
  if r.platform == 'cpu':
    lines.append('  (XLA:CPU figures: on a TPU or GPU the memory layout, the fusions and hence '
                 'the temporaries and bytes accessed differ; see docs/performance.md, "Dry run".')
    if r.fsdp and r.num_devices > 1:
      lines.append('   XLA:CPU has no reduce-scatter: the gradients\' reduce-scatter compiles '
                   'to an all-reduce of the same bytes followed by a slice.)')
    else:
      lines[-1] += ')'
  return '\n'.join(lines)


def main(config: ml_collections.ConfigDict, config_name: str = '',
         json_path: str | None = None) -> Report:
  """`ivid-jax train --dry_run`: prints the table, optionally writes it as JSON to json_path."""
  report = dry_run(config, config_name=config_name)
  print(format_report(report))
  if json_path:
    with open(json_path, 'w', encoding='utf-8') as f:
      json.dump({'train': [report.to_json()]}, f, indent=1)
  return report
