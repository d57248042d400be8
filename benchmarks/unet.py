"""ADM UNet speed: parameters, forward latency, training throughput, achieved FLOP/s.

  python benchmarks/unet.py [--settings=small,imagenet128] [--repeats=3]

On CPU, XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= (plain XLA convolutions instead
of YNNPACK fusions) is about 1.5x faster on this model; the header prints the flags in use.

Prints one table. Settings (the authors' PyTorch figures on the 2-core CPU):
  small        64 channels, 64 px, mult (1, 2, 2), attention at 16 and 8,
               1000 classes, batch 8, 7.9M parameters: 0.60 s forward, 2.11 s / step.
  imagenet128  G_u, 421.5M parameters, batch 2: 7.13 s forward, 30.1 s / step.
  tiny         a 32 px smoke setting.
A training step is the authors' objective (eps-MSE at uniform t, 10% label
dropout) with AdamW (lr 1e-4), float32. The device's peak is measured in the
same run with a 4096 x 4096 float32 matmul.
"""

from __future__ import annotations

import os
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
from ivid_jax.models import unet

_SETTINGS = flags.DEFINE_list('settings', ['small', 'imagenet128'], 'Settings to time.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls per measurement (median).')

SMALL = dict(image_size=64, in_channels=4, out_channels=4, model_channels=64, num_res_blocks=2,
             attention_resolutions=(16, 8), channel_mult=(1, 2, 2), num_classes=1000,
             has_null_class=True, num_groups=32, num_head_channels=64)
SETTINGS = {
    'tiny': (dict(SMALL, image_size=32, model_channels=32, num_groups=16, num_head_channels=32),
             [8], None),
    'small': (SMALL, [8, 32], (0.60, 2.11)),
    'imagenet128': (dict(imagenet128_uncond.get_config().model), [2], (7.13, 30.1)),
}


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _peak_flops(repeats):
  n = 4096
  a = jnp.ones((n, n), jnp.float32)
  mm = jax.jit(lambda a: a @ a)
  jax.block_until_ready(mm(a))
  return 2 * n ** 3 / _median_time(lambda: mm(a), repeats)


def _flops(compiled):
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', float('nan')))


def main(argv):
  del argv
  repeats = _REPEATS.value
  peak = _peak_flops(repeats)
  device = jax.devices()[0]
  print(f'# {device.platform.upper()} {device.device_kind}; matmul peak {peak / 1e9:.0f} GFLOP/s; '
        f'jax {jax.__version__}; XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  print('| setting | params | batch | fwd s | train s/step | train img/s | compile s | '
        'fwd / train GFLOP | fraction of peak (train) | authors fwd / step s |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  schedule = schedules.make_schedule()
  for name in _SETTINGS.value:
    args, batches, authors = SETTINGS[name]
    model = unet.UNet(**args)
    n = args['image_size']
    for bsz in batches:
      rng = jax.random.key(0)
      x = jax.random.normal(rng, (bsz, n, n, args['in_channels']))
      t = jnp.arange(bsz, dtype=jnp.int32) * 97 % 1000
      c = jnp.arange(bsz, dtype=jnp.int32) % args['num_classes']
      start = time.perf_counter()
      params = jax.jit(model.init)(rng, x, t, c)['params']
      count = sum(p.size for p in jax.tree.leaves(params))
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
      fwd_s = _median_time(lambda: fwd(params), repeats)
      state = [params, opt]

      def one_step():
        state[0], state[1], loss = step(state[0], state[1], rng)
        return loss

      one_step()
      step_s = _median_time(one_step, repeats)
      f_fwd, f_step = _flops(fwd), _flops(step)
      ref = f'{authors[0]:.2f} / {authors[1]:.2f}' if authors else '-'
      print(f'| {name} | {count / 1e6:.1f}M | {bsz} | {fwd_s:.3f} | {step_s:.3f} | '
            f'{bsz / step_s:.1f} | {compile_s:.0f} | {f_fwd / 1e9:.1f} / {f_step / 1e9:.1f} | '
            f'{f_step / step_s / peak:.0%} | {ref} |', flush=True)
      del state, params, opt


if __name__ == '__main__':
  app.run(main)
