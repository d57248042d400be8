"""Training throughput of both IVID networks: images/s per device and the fraction of peak FLOP/s.

  python benchmarks/train.py [--settings=small,imagenet128] [--kinds=uncond,cond]
                             [--authors_src=DIR] [--repeats=3] [--interleave=auto]

Times the trainer's own step (`ivid_jax.training.train.train_step`, jitted over a
mesh of this host's devices, as `ivid-jax train` runs it), float32, the
authors' AdamW, with the project's default flags: `uncond` is eps-MSE at
uniform t with 10% label dropout; `cond` also builds the training pair on
device (warp to a random camera and back at ssaa 3, blur, erosion) and the
10-channel inpainting input. Median of --repeats steps after compilation.
FLOPs and bytes accessed come from XLA's cost analysis of the compiled step (per
device: what an accelerator would have to compute and move; the bytes are the sum
over the compiled ops of what each reads and writes, with no reuse between ops);
the peak is a 4096 x 4096 float32 matmul timed in the same run.

Settings (batch per device: CPU / accelerator):
  small        64 px, 64 channels, mult (1, 2, 2), attention at 16 and 8, 2 res
               blocks, 1000 classes (7.9M parameters); batch 8 / 8.
  imagenet128  the authors' G_u / G_c (421.5M parameters); batch 2 / 16.

--authors_src=DIR (the authors' repository, with torch installed) also times
their AdmUnet2d AdamW step on the same machine in the same run through
benchmarks/authors_step.py and prints ours / theirs. With --interleave (the
default for `small`) both steps are built first and timed call by call (ours,
theirs, ours, ...), so both see the same load, and the ratio is the median of
the per-pair ratios with their range; `imagenet128` times them one after the
other by default (on a CPU ours peaks at about 17 GB resident and theirs at about
11 GB: both at once would not fit a 24 GB machine), and its range prints '-'.
Their conditional step excludes the warp (their data loader workers render it
with OpenGL), ours includes it. Without --authors_src those columns print '-'.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from ivid_jax.configs import imagenet128_cond
from ivid_jax.configs import imagenet128_uncond
from ivid_jax.data import pipeline
from ivid_jax.training import checkpoint
from ivid_jax.training import parallel
from ivid_jax.training import train

_SETTINGS = flags.DEFINE_list('settings', ['small', 'imagenet128'], 'Settings to time.')
_KINDS = flags.DEFINE_list('kinds', ['uncond', 'cond'], 'Networks to time.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed steps per measurement (median).')
_AUTHORS = flags.DEFINE_string('authors_src', None, "The authors' repository (JeffreyXiang/ivid) "
                               'to time their PyTorch step in the same run.')
_INTERLEAVE = flags.DEFINE_enum('interleave', 'auto', ['auto', 'true', 'false'],
                                "Time ours and the authors' step call by call (auto: for the "
                                'settings where both fit in memory at once, i.e. small).')

SMALL = dict(image_size=64, in_channels=4, out_channels=4, model_channels=64, num_res_blocks=2,
             attention_resolutions=(16, 8), channel_mult=(1, 2, 2), num_classes=1000,
             has_null_class=True, num_groups=32, num_heads=None, num_head_channels=64,
             dropout=0.0)
SETTINGS = {  # name: (model fields, batch per device on CPU, on accelerators)
    'small': (SMALL, 8, 8),
    'imagenet128': (dict(imagenet128_uncond.get_config().model), 2, 16),
}
_INTERLEAVED_BY_DEFAULT = ('small',)


def _peak_flops(repeats: int) -> float:
  n = 4096
  a = jnp.ones((n, n), jnp.float32)
  mm = jax.jit(lambda a: a @ a)
  return 2 * n ** 3 / float(np.median(_time_alone(lambda: mm(a), repeats)))


def _cost(compiled) -> tuple[float, float]:
  """(FLOPs, bytes accessed) of one call, from XLA's cost analysis (NaN where it has none)."""
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  return (float(cost.get('flops', float('nan'))),
          float(cost.get('bytes accessed', float('nan'))))


def _config(fields: dict, kind: str, batch: int):
  config = (imagenet128_uncond if kind == 'uncond' else imagenet128_cond).get_config()
  config.model.update({k: v for k, v in fields.items() if k != 'in_channels'})
  config.init = 'flax'  # the init does not change the speed; skip the host redraw
  config.input.batch_size = batch
  return config


def _authors_step(fields: dict, kind: str, batch: int):
  """The authors' AdamW step (benchmarks/authors_step.py); None without --authors_src."""
  if not _AUTHORS.value:
    return None
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  try:
    import authors_step  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise app.UsageError(f'--authors_src needs benchmarks/authors_step.py; it could not be '
                         f'imported: {e}') from e
  args = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
  args.update(in_channels=train.IN_CHANNELS[kind], use_fp16=False)
  return authors_step.build_authors_step(_AUTHORS.value, args, batch)


def _timed(fn) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def _build_step(fields: dict, kind: str, per_device: int):
  """Our compiled train step on a fixed batch: (one() running a step, compile s, FLOPs, bytes)."""
  devices = jax.local_devices()
  mesh = parallel.make_mesh(devices)
  batch_size = per_device * len(devices)
  config = _config(fields, kind, batch_size)
  model = checkpoint.make_model(config)
  start = time.perf_counter()
  _, _, create = train.make_initial_state(config, model, mesh)
  state = create()
  source = pipeline.random_smooth_source(batch_size, model.image_size, seed=0,
                                         num_labels=model.num_classes)
  host = next(pipeline.make_loader(source, global_batch_size=batch_size, seed=0,
                                   shard_index=0, shard_count=1, conditional=kind == 'cond'))
  batch = pipeline.to_global(host, parallel.batch_sharding(mesh))
  step = train.jit_train_step(model, train.step_config(config), train.optim_settings(config),
                              mesh)
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  holder = [state]

  def one():
    holder[0], metrics = compiled(holder[0], batch)
    return metrics['loss']

  return one, compile_s, *_cost(compiled)


def _time_alone(fn, repeats: int) -> list[float]:
  """Seconds of `repeats` calls of fn after an untimed one (the first call allocates)."""
  jax.block_until_ready(fn())
  return [_timed(fn) for _ in range(repeats)]


def _time_interleaved(ours, theirs, repeats: int) -> tuple[list[float], list[float]]:
  """Per-call seconds of both, called in turn (ours, theirs, ours, ...): both see the same load."""
  jax.block_until_ready(ours())
  theirs()
  mine, their = [], []
  for _ in range(repeats):
    mine.append(_timed(ours))
    their.append(_timed(theirs))
  return mine, their


def main(argv):
  del argv
  repeats = _REPEATS.value
  device = jax.devices()[0]
  accelerator = device.platform != 'cpu'
  peak = _peak_flops(repeats)
  print(f'# {device.platform.upper()} {device.device_kind} x {jax.local_device_count()}; matmul '
        f'peak {peak / 1e9:.0f} GFLOP/s (float32, per device); jax {jax.__version__}; '
        f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}; {time.strftime("%Y-%m-%d")}')
  print('| setting | network | params | batch / device | compile s | step s | images/s / device '
        '| GFLOP / step / device | GB accessed / step / device | fraction of peak '
        '| authors step s | ours / authors (range) |')
  print('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for name in _SETTINGS.value:
    fields, cpu_batch, accel_batch = SETTINGS[name]
    per_device = accel_batch if accelerator else cpu_batch
    interleave = (_INTERLEAVE.value == 'true' or
                  (_INTERLEAVE.value == 'auto' and name in _INTERLEAVED_BY_DEFAULT))
    for kind in _KINDS.value:
      count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
          checkpoint.abstract_params(checkpoint.make_model(_config(fields, kind, per_device)))))
      ours, compile_s, flops, nbytes = _build_step(fields, kind, per_device)
      with_authors = bool(_AUTHORS.value) and not accelerator
      their = None
      if with_authors and interleave:
        mine, their = _time_interleaved(ours, _authors_step(fields, kind, per_device).step,
                                        repeats)
      else:
        mine = _time_alone(ours, repeats)
      del ours  # frees our state before a sequential authors' step is built
      if with_authors and not interleave:
        their = _time_alone(_authors_step(fields, kind, per_device).step, repeats)
      step_s = float(np.median(mine))
      # XLA's cost analysis is of the partitioned (per-device) program.
      fraction = flops / step_s / peak
      authors = ratio = '-'
      if their is not None:
        authors = f'{np.median(their):.3f}'
        if interleave:
          r = np.array(mine) / np.array(their)
          ratio = f'{np.median(r):.2f}x ({r.min():.2f}-{r.max():.2f})'
        else:
          ratio = f'{step_s / np.median(their):.2f}x (-)'
      print(f'| {name} | {kind} | {count / 1e6:.1f}M | {per_device} | {compile_s:.0f} | '
            f'{step_s:.3f} | {per_device / step_s:.2f} | '
            f'{flops / 1e9:.0f} | {nbytes / 1e9:.1f} | {fraction:.0%} | {authors} | {ratio} |',
            flush=True)


if __name__ == '__main__':
  app.run(main)
