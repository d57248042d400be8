"""How grainy an unconditional network's samples are, per sampler: one table and one picture.

  python benchmarks/sampler_noise.py [--uncond=FILE] [--num=16] [--ddpm] [--out=noise.png]

Draws --num samples of the network (default: the shipped synthetic G_u; labels
i % classes, the trainer's preview noise, x_0 clipped, guidance --guidance)
with deterministic DDIM (eta 0, the authors' choice) at 50 and 250 steps,
stochastic DDIM (eta 1) at 50 and 250 steps, and with --ddpm ancestral
sampling over all 1000 steps (the authors' G_u sampler; slow on a CPU).

Grain: the mean absolute difference between an image and its 3x3 median, in
[0, 1] units, for RGB and for depth, beside the same figure for --num true
view-0 images of the synthetic_rgbd test split the network was trained on
(rendered by the dataset's generator, no TFDS build). Flat-shaded scenes have
almost none; speckle raises it. The picture holds one row of RGB and one of
depth per sampler, the true images last.
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

from ivid_jax.data import preprocess
from ivid_jax.data import synthetic_rgbd
from ivid_jax.demos import scenes as demo
from ivid_jax.diffusion import guidance
from ivid_jax.diffusion import samplers
from ivid_jax.diffusion import schedules
from ivid_jax.evaluation import report
from ivid_jax.models import model_file
from ivid_jax.training import previews
from ivid_jax.training import reporting

_UNCOND = flags.DEFINE_string('uncond', None, 'Unconditional model file (default: shipped).')
_NUM = flags.DEFINE_integer('num', 16, 'Samples per sampler.')
_GUIDANCE = flags.DEFINE_float('guidance', 1.0, 'Guidance w (the synthetic previews: 1).')
_DDPM = flags.DEFINE_bool('ddpm', False, 'Also DDPM over all 1000 steps (minutes on a CPU).')
_OUT = flags.DEFINE_string('out', None, 'PNG of the samples (none: only the table).')
_SEED = flags.DEFINE_integer('seed', 0, 'Noise and sampler seed.')


def grain(x: np.ndarray) -> tuple[float, float]:
  """(RGB, depth) mean |x - median3x3(x)| of images [N, S, S, 4] in [0, 1] (edges replicated)."""
  s = x.shape[1]
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  shifts = np.stack([padded[:, i:i + s, j:j + s] for i in range(3) for j in range(3)])
  diff = np.abs(x - np.median(shifts, axis=0))
  return float(diff[..., :3].mean()), float(diff[..., 3].mean())


def true_images(image_size: int, textures: str, num: int) -> np.ndarray:
  """View 0 of test scenes 0..num-1 as the network sees them, in [0, 1]: [N, S, S, 4]."""
  config = synthetic_rgbd.SyntheticRgbdConfig(name=f'r{image_size}', resolution=image_size,
                                              num_train=num, num_test=num, textures=textures)
  batch = synthetic_rgbd.generate(config, 'test', 0, num)
  x0 = preprocess.to_model_input(batch['rgb'][:, 0], batch['depth'][:, 0])
  return np.asarray(x0) / 2.0 + 0.5


def main(argv):
  del argv
  path = _UNCOND.value or demo.shipped_model('uncond')
  mf = model_file.load(path, expect_kind='uncond')
  model = mf.model
  inputs = previews.make_inputs(kind='uncond', num=_NUM.value, image_size=model.image_size,
                                num_classes=model.num_classes, seed=_SEED.value)
  schedule = schedules.make_schedule('linear', 1000)
  eps_fn = guidance.make_eps_fn(model, _GUIDANCE.value, False)
  aux = {'params': mf.params,
         'classes': None if inputs.labels is None else jnp.asarray(inputs.labels)}
  noise, key = jnp.asarray(inputs.noise), jax.random.key(_SEED.value)
  runs = [('DDIM 50, eta 0 (deterministic)', 50, 0.0),
          ('DDIM 250, eta 0 (deterministic)', 250, 0.0),
          ('DDIM 50, eta 1 (stochastic)', 50, 1.0),
          ('DDIM 250, eta 1 (stochastic)', 250, 1.0)]
  if _DDPM.value:
    runs.append(('DDPM 1000 (ancestral)', 1000, None))
  rows, pictures = [], []
  for name, steps, eta in runs:
    start = time.time()
    if eta is None:
      out = samplers.ddpm_sample(eps_fn, aux, key, noise, schedule, clip_denoised=True)
    else:
      out = samplers.ddim_sample(eps_fn, aux, key, noise, schedule, steps=steps, eta=eta,
                                 clip_denoised=True)
    images = np.clip(np.asarray(out) / 2.0 + 0.5, 0.0, 1.0)
    seconds = time.time() - start
    rows.append([name, *grain(images), seconds])
    pictures.append(images)
  textures = demo.training_textures(path)
  truth = true_images(model.image_size, textures, _NUM.value)
  rows.append([f'true view-0 images (synthetic_rgbd test, {textures} textures)', *grain(truth),
               ''])
  pictures.append(truth)
  print(f'# sampler grain: {os.path.basename(path)}, {_NUM.value} samples, guidance '
        f'{_GUIDANCE.value}, x_0 clipped; {platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} CPUs, JAX {jax.__version__} on {jax.devices()[0].platform}\n')
  print(report.markdown_table(['sampler', 'RGB grain', 'depth grain', 'seconds (with compile)'],
                              rows))
  if _OUT.value:
    lines = []
    for images in pictures:
      rgb, depth = previews.to_images(images * 2.0 - 1.0)
      lines += [list(rgb), list(depth)]
    picture = previews.tile(lines)
    reporting.save_png(_OUT.value, picture)  # 8 bits rounded to nearest
    print(f'\nwrote {_OUT.value}: rows of RGB and depth per sampler, in the table\'s order')


if __name__ == '__main__':
  app.run(main)
