"""Does a conditional network use its condition? One table: its x_0 error with and without it.

  python benchmarks/condition_use.py [--cond=FILE] [--num=32] [--t=200,500,800,950]

Builds --num training pairs the way the trainer does (view 0 of synthetic_rgbd
test scenes at the network's resolution, solid textures, the config's on-device
forward-backward warp with the trainer's per-example cameras and keys), noises
each target to step t, and asks the network (default: the shipped synthetic G_c)
for x_0 with its condition as given, without the colour (mask_rgb := 0), without
the depth (mask := 0), and without either. The table: the RMS error of that x_0 in
[-1, 1] units, RGB on the pixels whose colour the condition shows and depth on
those whose depth it shows. A network that uses its condition errs less with it.
"""

from __future__ import annotations

import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from ivid_jax.configs import synthetic_cond
from ivid_jax.data import conditional
from ivid_jax.data import pipeline
from ivid_jax.data import preprocess
from ivid_jax.data import synthetic_rgbd
from ivid_jax.demos import scenes as demo
from ivid_jax.diffusion import gaussian
from ivid_jax.diffusion import guidance
from ivid_jax.diffusion import schedules
from ivid_jax.evaluation import report
from ivid_jax.models import model_file

_COND = flags.DEFINE_string('cond', None, 'Conditional model file (default: shipped).')
_NUM = flags.DEFINE_integer('num', 32, 'Training pairs (test-split scenes 0..num-1).')
_T = flags.DEFINE_list('t', ['200', '500', '800', '950'], 'Diffusion steps to probe.')


def main(argv):
  del argv
  path = _COND.value or demo.shipped_model('cond')
  mf = model_file.load(path, expect_kind='cond')
  model, params = mf.model, mf.params
  size, n = model.image_size, _NUM.value
  cfg = synthetic_cond.get_config()
  data = synthetic_rgbd.generate(
      synthetic_rgbd.SyntheticRgbdConfig(name=f'r{size}', resolution=size, num_train=n,
                                         num_test=n, textures='solid'), 'test', 0, n)
  x0 = jnp.asarray(preprocess.to_model_input(data['rgb'][:, 0], data['depth'][:, 0]))
  extra = [pipeline.example_camera_and_rng(0, 0, i) for i in range(n)]
  camera = jax.tree.map(lambda *xs: np.stack(xs), *[e['camera'] for e in extra])
  pair = conditional.make_training_pair(np.stack([e['rng'] for e in extra]), x0, camera,
                                        **dict(cfg.warp))
  schedule = schedules.make_schedule(mf.meta['diffusion']['schedule'],
                                     mf.meta['diffusion']['num_steps'])
  labels = jnp.asarray(data['label'], jnp.int32)

  @jax.jit
  def predict_x0(x_t, t, mask, mask_rgb):
    x = guidance.inpaint_inputs(jax.random.key(2), x_t, pair['y'], mask, mask_rgb)
    eps = model.apply({'params': params}, x, t, labels)
    return gaussian.predict_x0(schedule, x_t, t, eps)

  target, mask, mask_rgb = pair['x0'], pair['mask'], pair['mask_rgb']
  variants = (('both', mask, mask_rgb), ('no colour', mask, 0 * mask_rgb),
              ('no depth', 0 * mask, mask_rgb), ('neither', 0 * mask, 0 * mask_rgb))
  rows = []
  for step in (int(t) for t in _T.value):
    t = jnp.full((n,), step, jnp.int32)
    x_t = gaussian.q_sample(schedule, target, t, jax.random.normal(jax.random.key(1), target.shape))
    row = [step]
    for _, m, mr in variants:
      err = (predict_x0(x_t, t, m, mr) - target) ** 2
      row.append(float(jnp.sqrt((err[..., :3] * mask_rgb).sum() / (3 * mask_rgb.sum()))))
    for _, m, mr in variants:
      err = (predict_x0(x_t, t, m, mr) - target) ** 2
      row.append(float(jnp.sqrt((err[..., 3:] * mask).sum() / mask.sum())))
    rows.append(row)

  print(f'# condition use: {os.path.basename(path)} (step {mf.meta.get("step", "?")}), {n} '
        f'training pairs of synthetic_rgbd test view 0 at {size} px; the condition shows the '
        f'colour of {float(mask_rgb.mean()):.0%} and the depth of {float(mask.mean()):.0%} of '
        f'the pixels; {platform.processor() or platform.machine()}, JAX {jax.__version__}\n')
  names = [name for name, _, _ in variants]
  print(report.markdown_table(
      ['t'] + [f'RGB x_0 RMS error, {v}' for v in names]
      + [f'depth x_0 RMS error, {v}' for v in names], rows))


if __name__ == '__main__':
  app.run(main)
