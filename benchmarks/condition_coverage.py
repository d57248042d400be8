"""How much of a training condition reaches G_c: the warp's constants at a resolution, one table.

  python benchmarks/condition_coverage.py [--num=64] [--resolution=32]

Mean `mask` (depth shown) and `mask_rgb` (colour shown) of `--num` training
pairs of synthetic_rgbd (r<RES>_solid, examples 0..num-1, the preview pairs'
cameras and keys) with the authors' warp constants (tolerance 0.02, erosion
boxes up to 9 px: pixels of their 128 px images), with only the erosion scaled,
and with both scaled to the resolution (configs/synthetic_cond.py at 32 px).
"""

from absl import app
from absl import flags

from ivid_jax.evaluation import report
from ivid_jax.sampling import chain
from ivid_jax.training import input as input_lib
from ivid_jax.training import previews

_NUM = flags.DEFINE_integer('num', 64, 'Training pairs.')
_RESOLUTION = flags.DEFINE_integer('resolution', 32, 'synthetic_rgbd resolution (32 or 64).')


def main(argv):
  del argv
  n = _RESOLUTION.value
  source = input_lib.make_source(dataset='synthetic_rgbd', image_size=n,
                                 tfds_config=f'r{n}_solid')
  scale = 128 / n
  settings = (("the authors' (128 px)", 4, 0.02),
              ('erosion scaled', max(0, round(4 / scale)), 0.02),
              ('erosion and tolerance scaled', max(0, round(4 / scale)), chain.scaled_tolerance(n, 0.02)))
  rows = []
  for name, erode, tol in settings:
    warp = dict(ssaa=3, padding='image', prewarp_noise=True, postwarp_noise=False,
                blur_prob=0.8, erode_max_steps=erode, atol=tol, rtol=tol)
    pairs = previews.make_inputs(kind='cond', num=_NUM.value, image_size=n, num_classes=5,
                                 seed=0, source=source, warp=warp)
    rows.append([name, erode, tol, float(pairs.mask.mean()), float(pairs.mask_rgb.mean())])
  print(f'# condition coverage: {_NUM.value} synthetic_rgbd/r{n}_solid training pairs\n')
  print(report.markdown_table(['warp constants', 'erode_max_steps', 'atol = rtol',
                               'depth shown', 'colour shown'], rows))


if __name__ == '__main__':
  app.run(main)
