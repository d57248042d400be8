"""Seconds per generated scene: the first view and each further view, tiny and ImageNet-128.

  python benchmarks/sample.py [--settings=tiny,imagenet128] [--batch_size=2]

tiny: the 32 px networks of configs/imagenet128_{uncond,cond}.py:runlocal (32
channels, 10 classes) with random weights, the authors' schedule (DDPM over
1000 steps for view 0, DDIM-50 with the x0 edits for the others), guidance 3,
a batch of `batch_size` scenes: the 'uncond' view set (view 0 only) and the
'3x9' chain are run end to end; each further view costs (3x9 - uncond) / 26.
The first call includes compilation (its own column).

imagenet128: the authors' 421.5M-parameter networks at 128 px. A full chain
takes hours on a CPU, so the row is computed from measured parts: one guided
denoiser step of each network (a batch of 2: both halves of classifier-free
guidance) and one aggregation of 13 earlier views (the 3x9 chain's mean) at
128 px; first view = 1000 x the unconditional step, further view = 50 x the
conditional step + the aggregation. Its figures are marked 'est.'.
"""

from __future__ import annotations

import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from ivid_jax.configs import imagenet128_cond
from ivid_jax.configs import imagenet128_uncond
from ivid_jax.diffusion import guidance
from ivid_jax.diffusion import schedules
from ivid_jax.geometry import cameras
from ivid_jax.models import unet
from ivid_jax.sampling import aggregate
from ivid_jax.sampling import chain
from ivid_jax.sampling import sampler
from ivid_jax.sampling import viewsets

_SETTINGS = flags.DEFINE_list('settings', ['tiny', 'imagenet128'], 'Settings to time.')
_BATCH = flags.DEFINE_integer('batch_size', 2, 'Scenes per chain call (tiny).')
_GUIDANCE = 3.0


def _random_params(model, channels, seed):
  """LeCun-normal weights drawn with numpy from the shapes (no init compilation)."""
  s = model.image_size
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, s, s, channels)), jnp.zeros((1,), jnp.int32),
      jnp.zeros((1,), jnp.int32)))['params']
  rng = np.random.default_rng(seed)

  def draw(leaf):
    if len(leaf.shape) == 1:
      return np.zeros(leaf.shape, np.float32)
    return (rng.standard_normal(leaf.shape, np.float32) / np.sqrt(np.prod(leaf.shape[:-1])))

  return jax.tree.map(draw, shapes)


def _networks(arg):
  nets = []
  for i, cfg in enumerate((imagenet128_uncond.get_config(arg), imagenet128_cond.get_config(arg))):
    model = unet.UNet(**cfg.model)
    params = jax.tree.map(jnp.asarray, _random_params(model, cfg.model.in_channels, i))
    eps_fn = guidance.make_eps_fn(model, _GUIDANCE, inpaint=i == 1)
    nets.append(chain.Network(eps_fn, params, schedules.make_schedule()))
  return nets


def _timed(fn):
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def _tiny(batch):
  uncond, cond = _networks('runlocal')
  seeds = list(range(batch))
  keys = sampler.scene_keys(seeds)
  classes = jnp.asarray(seeds, jnp.int32) % 10
  size = imagenet128_uncond.get_config('runlocal').model.image_size
  settings = chain.Settings()  # DDPM-1000, DDIM-50, the authors' edits
  out = {}
  for name in ('uncond', '3x9'):
    vs = viewsets.make(name, keys)
    mvs = cameras.orbit_camera(vs.yaw, vs.pitch)
    second = cond if name != 'uncond' else None
    fn = lambda mvs=mvs, second=second: chain.chain(uncond, second, keys, classes, mvs,
                                                    image_size=size, settings=settings)
    first = _timed(fn)
    out[name] = (first, _timed(fn))
  first_view = out['uncond'][1] / batch
  further = (out['3x9'][1] - out['uncond'][1]) / batch / 26
  compile_s = out['3x9'][0] - out['3x9'][1]
  return [f'tiny (32 px, 32 ch, batch {batch})', f'{compile_s:.0f}', f'{first_view:.1f}',
          f'{further:.2f}', f'{first_view + 26 * further:.0f}']


def _imagenet128():
  uncond, cond = _networks(None)
  n = 128
  x_u = jnp.zeros((1, n, n, 4))
  t = jnp.full((1,), 500, jnp.int32)
  c = jnp.zeros((1,), jnp.int32)
  step_u = jax.jit(lambda p, x: uncond.eps_fn({'params': p, 'classes': c}, jax.random.key(0), x, t))
  aux_c = {'classes': c, 'y': jnp.zeros((1, n, n, 4)), 'mask': jnp.ones((1, n, n, 1)),
           'mask_rgb': jnp.ones((1, n, n, 1))}
  step_c = jax.jit(lambda p, x: cond.eps_fn({'params': p, **aux_c}, jax.random.key(0), x, t))
  _timed(lambda: step_u(uncond.params, x_u))
  su = min(_timed(lambda: step_u(uncond.params, x_u)) for _ in range(2))
  _timed(lambda: step_c(cond.params, x_u))
  sc = min(_timed(lambda: step_c(cond.params, x_u)) for _ in range(2))
  rng = np.random.default_rng(0)
  views = jnp.asarray(np.concatenate([rng.random((27, n, n, 3)), 0.3 + 0.05 * rng.random(
      (27, n, n, 1))], -1).astype(np.float32))
  vs = viewsets.make('3x9', num_scenes=1)
  mvs = cameras.orbit_camera(vs.yaw[0], vs.pitch[0])
  agg = lambda: aggregate.aggregate_condition(views, mvs, jnp.arange(27) < 13, mvs[13])
  _timed(agg)
  sa = min(_timed(agg) for _ in range(2))
  first_view = 1000 * su
  further = 50 * sc + sa
  return ['imagenet128 (421.5M x 2, batch 1)', '-', f'{first_view:.0f} est.',
          f'{further:.0f} est.', f'{first_view + 26 * further:.0f} est.']


def main(argv):
  del argv
  device = jax.devices()[0]
  load = ' / '.join(f'{x:.1f}' for x in os.getloadavg())
  print(f'# {device.platform.upper()} {device.device_kind}, {jax.device_count()} device(s), '
        f'{os.cpu_count()} cores, {platform.processor() or platform.machine()}, jax '
        f'{jax.__version__}, XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}, load average {load}')
  print('| setting | compile s | first view s / scene | further view s / scene | 3x9 scene s |')
  print('|---|---:|---:|---:|---:|')
  for name in _SETTINGS.value:
    row = _tiny(_BATCH.value) if name == 'tiny' else _imagenet128()
    print('| ' + ' | '.join(row) + ' |', flush=True)


if __name__ == '__main__':
  app.run(main)
