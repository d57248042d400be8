"""Seconds per generated scene: the first view and each further view, tiny and ImageNet-128.

  python benchmarks/sample.py [--settings=tiny,imagenet128] [--batch_size=2]

tiny: the 32 px networks of configs/imagenet128_{uncond,cond}.py:runlocal (32
channels, 10 classes) with random weights, the authors' schedule (DDPM over
1000 steps for view 0, DDIM-50 with the x0 edits for the others), guidance 3,
a batch of `batch_size` scenes: view 0 alone, and the 26 further views of
the '3x9' chain from a given view 0, each run end to end and timed directly
(compilation, from the first calls, in its own column).

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
  size = imagenet128_uncond.get_config('runlocal').model.image_size
  seeds = list(range(batch))
  keys = sampler.scene_keys(seeds)
  classes = jnp.asarray(seeds, jnp.int32) % 10
  settings = chain.Settings()  # DDPM-1000, DDIM-50, the authors' edits
  vs = viewsets.make('3x9', keys)
  mvs = cameras.orbit_camera(vs.yaw, vs.pitch)
  # View 0 alone, then the 26 further views from a given view 0 (the image-to-3D path), each
  # timed directly: subtracting two long runs would be at the mercy of the machine's load.
  first = lambda: chain.chain(uncond, None, keys, classes, mvs[:, :1], image_size=size,
                              settings=settings).views
  given = jnp.full((batch, size, size, 4), 0.5, jnp.float32)
  further = lambda: chain.chain(None, cond, keys, classes, mvs, given, image_size=size,
                                settings=settings).views
  compile_s = _timed(first) + _timed(further)
  t_first, t_further = _timed(first), _timed(further)
  compile_s -= t_first + t_further
  per_first = t_first / batch
  per_further = t_further / batch / 26
  return [f'tiny (32 px, 32 ch, batch {batch})', f'{compile_s:.0f}', f'{per_first:.1f}',
          f'{per_further:.2f}', f'{per_first + 26 * per_further:.0f}']


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
  su = float(np.median([_timed(lambda: step_u(uncond.params, x_u)) for _ in range(3)]))
  _timed(lambda: step_c(cond.params, x_u))
  sc = float(np.median([_timed(lambda: step_c(cond.params, x_u)) for _ in range(3)]))
  rng = np.random.default_rng(0)
  views = jnp.asarray(np.concatenate([rng.random((27, n, n, 3)), 0.3 + 0.05 * rng.random(
      (27, n, n, 1))], -1).astype(np.float32))
  vs = viewsets.make('3x9', num_scenes=1)
  mvs = cameras.orbit_camera(vs.yaw[0], vs.pitch[0])
  agg = lambda: aggregate.aggregate_condition(views, mvs, jnp.arange(27) < 13, mvs[13])
  _timed(agg)
  sa = float(np.median([_timed(agg) for _ in range(3)]))
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
