"""ADM UNet speed: parameters, forward latency, training throughput, achieved FLOP/s.

  python benchmarks/unet.py [--settings=small,imagenet128] [--repeats=3]
      [--authors_src=/tmp/ivid] [--impl=auto]

Prints one table. Settings:
  small        64 channels, 64 px, mult (1, 2, 2), attention at 16 and 8, 1000 classes,
               batch 8 and 32, 7.9M parameters.
  imagenet128  G_u, 421.5M parameters, batch 2.
  tiny         a 32 px smoke setting.
A training step is the authors' objective (eps-MSE at uniform t, 10% label dropout) with
AdamW (lr 1e-4), float32, with the project's defaults (no XLA_FLAGS needed: see
ivid_jax/models/cpu_defaults.py; the header prints the flags in effect). FLOPs and bytes
accessed are XLA's cost analysis of the compiled programs (the bytes are the sum over the
compiled ops of what each reads and writes, with no reuse between ops: the memory traffic an
accelerator would see without a cache). The device's peak is measured in the same
run with a 4096 x 4096 float32 matmul.

With --authors_src (a checkout of the authors' repository, torch installed) the authors'
own `AdmUnet2d` forward and AdamW step (benchmarks/authors_step.py) are timed in the same
process, interleaved with ours call by call (ours, theirs, ours, theirs, ...), and the
last columns give the median of the per-pair ratios ours / theirs with their range, a
measure of the noise of a shared machine. Without it those columns print '-'.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags

from ivid_jax.configs import imagenet128_uncond
from ivid_jax.diffusion import gaussian
from ivid_jax.diffusion import guidance
from ivid_jax.diffusion import schedules
from ivid_jax.models import cpu_defaults
from ivid_jax.models import unet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import authors_step  # pylint: disable=g-import-not-at-top,wrong-import-position

_SETTINGS = flags.DEFINE_list('settings', ['small', 'imagenet128'], 'Settings to time.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls per measurement (median).')
_AUTHORS_SRC = flags.DEFINE_string('authors_src', None,
                                   'A checkout of the authors\' repository: time their step too.')
_IMPL = flags.DEFINE_enum('impl', 'auto', ['auto', 'fused', 'xla'], 'UNet.impl to time.')

SMALL = dict(image_size=64, in_channels=4, out_channels=4, model_channels=64, num_res_blocks=2,
             attention_resolutions=(16, 8), channel_mult=(1, 2, 2), num_classes=1000,
             has_null_class=True, num_groups=32, num_head_channels=64)
SETTINGS = {
    'tiny': (dict(SMALL, image_size=32, model_channels=32, num_groups=16, num_head_channels=32),
             [8]),
    'small': (SMALL, [8, 32]),
    'imagenet128': (dict(imagenet128_uncond.get_config().model), [2]),
}


def _timed(fn) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def _peak_flops(repeats):
  n = 4096
  a = jnp.ones((n, n), jnp.float32)
  mm = jax.jit(lambda a: a @ a)
  jax.block_until_ready(mm(a))
  return 2 * n ** 3 / float(np.median([_timed(lambda: mm(a)) for _ in range(repeats)]))


def _cost(compiled):
  """(FLOPs, bytes accessed) of one call, from XLA's cost analysis (NaN where it has none)."""
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  return (float(cost.get('flops', float('nan'))),
          float(cost.get('bytes accessed', float('nan'))))


def _machine() -> str:
  device = jax.devices()[0]
  if device.platform != 'cpu':
    return f'{device.platform.upper()} {device.device_kind}'
  model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      model = next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
  except (OSError, StopIteration):
    pass
  return f'CPU {model}, {os.cpu_count()} cores'


def _our_step(model, args, bsz, rng):
  """Compiled forward and training step of our UNet, their costs and the compile time."""
  n = args['image_size']
  x = jax.random.normal(rng, (bsz, n, n, args['in_channels']))
  t = jnp.arange(bsz, dtype=jnp.int32) * 97 % 1000
  c = jnp.arange(bsz, dtype=jnp.int32) % args['num_classes']
  schedule = schedules.make_schedule()
  start = time.perf_counter()
  params = jax.jit(model.init)(rng, x, t, c)['params']
  tx = optax.adamw(1e-4, weight_decay=0.0)
  opt = jax.jit(tx.init)(params)

  def loss_fn(p, key):
    k_t, k_eps, k_drop = jax.random.split(key, 3)
    tt = gaussian.sample_timesteps(k_t, bsz, schedule.num_steps)
    eps = jax.random.normal(k_eps, x.shape)
    pred = model.apply({'params': p}, gaussian.q_sample(schedule, x, tt, eps), tt,
                       guidance.drop_labels(k_drop, c))
    return gaussian.eps_mse(pred, eps)

  def train_step(p, o, key):
    loss, grads = jax.value_and_grad(loss_fn)(p, key)
    updates, o = tx.update(grads, o, p)
    return optax.apply_updates(p, updates), o, loss

  fwd = jax.jit(lambda p: model.apply({'params': p}, x, t, c)).lower(params).compile()
  step = jax.jit(train_step, donate_argnums=(0, 1)).lower(params, opt, rng).compile()
  compile_s = time.perf_counter() - start
  count = sum(p.size for p in jax.tree.leaves(params))
  state = {'params': params, 'opt': opt, 'key': rng}

  def one_fwd():
    return fwd(state['params'])

  def one_step():
    state['key'] = jax.random.fold_in(state['key'], 1)
    state['params'], state['opt'], loss = step(state['params'], state['opt'], state['key'])
    return loss

  return one_fwd, one_step, count, compile_s, _cost(fwd), _cost(step)


def main(argv):
  del argv
  repeats = _REPEATS.value
  peak = _peak_flops(repeats)
  theirs_info = ''
  if _AUTHORS_SRC.value:
    import torch  # pylint: disable=import-outside-toplevel
    theirs_info = f'; authors: torch {torch.__version__}, {torch.get_num_threads()} threads'
  print(f'# {_machine()}; matmul peak {peak / 1e9:.0f} GFLOP/s; jax {jax.__version__}; '
        f'UNet.impl={_IMPL.value}; XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r} '
        f'(cpu_defaults: {cpu_defaults.status}){theirs_info}; {time.strftime("%Y-%m-%d")}')
  print('| setting | params | batch | fwd s | train s/step | train img/s | compile s | '
        'fwd / train GFLOP | train GB accessed | fraction of peak (train) | authors fwd / step s | '
        'ours / authors: fwd | ours / authors: step (range) |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for name in _SETTINGS.value:
    args, batches = SETTINGS[name]
    model = unet.UNet(**args, impl=_IMPL.value)
    for bsz in batches:
      fwd, step, count, compile_s, (f_fwd, _), (f_step, b_step) = _our_step(
          model, args, bsz, jax.random.key(0))
      theirs = (authors_step.build_authors_step(_AUTHORS_SRC.value, args, bsz)
                if _AUTHORS_SRC.value else None)
      fwd()
      step()  # the first call after compilation allocates; not timed
      if theirs:
        theirs.forward()
        theirs.step()
      times = {'fwd': [], 'step': [], 'a_fwd': [], 'a_step': []}
      for _ in range(repeats):  # interleaved, so that both see the same load
        times['fwd'].append(_timed(fwd))
        if theirs:
          times['a_fwd'].append(authors_step.timed(theirs.forward))
      for _ in range(repeats):
        times['step'].append(_timed(step))
        if theirs:
          times['a_step'].append(authors_step.timed(theirs.step))
      fwd_s, step_s = np.median(times['fwd']), np.median(times['step'])
      authors = ratio_fwd = ratio_step = '-'
      if theirs:
        authors = f'{np.median(times["a_fwd"]):.2f} / {np.median(times["a_step"]):.2f}'
        r_fwd = np.array(times['fwd']) / np.array(times['a_fwd'])
        r_step = np.array(times['step']) / np.array(times['a_step'])
        ratio_fwd = f'{np.median(r_fwd):.2f}'
        ratio_step = f'{np.median(r_step):.2f} ({r_step.min():.2f}-{r_step.max():.2f})'
      print(f'| {name} | {count / 1e6:.1f}M | {bsz} | {fwd_s:.3f} | {step_s:.3f} | '
            f'{bsz / step_s:.1f} | {compile_s:.0f} | {f_fwd / 1e9:.1f} / {f_step / 1e9:.1f} | '
            f'{b_step / 1e9:.1f} | '
            f'{f_step / step_s / peak:.0%} | {authors} | {ratio_fwd} | {ratio_step} |', flush=True)
      del fwd, step, theirs


if __name__ == '__main__':
  app.run(main)
