"""ivid-jax warp-demo: what the conditional model's training conditions look like.

  ivid-jax warp-demo [--config=configs/warp_demo.py] [--config.warp.ssaa=2] [--workdir=DIR]

Forward-backward warps of the bundled RGBD images to random training cameras
(reference 2.5): writes warp_grid.png (each image, its depth and the
conditions of random cameras, holes in magenta) and warp_swing.gif (the
condition along a swing of the camera) to --workdir. Well under a minute on a
CPU. Any config field can be overridden: --config.num_cameras=8.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ivid_jax import configs as _configs

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(_configs.__file__), 'warp_demo.py'),
    'A get_config() file (default: the packaged configs/warp_demo.py); fields can be '
    'overridden, e.g. --config.warp.ssaa=2.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'outputs/warp_demo', 'Where the picture and the '
                               'animation are written.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'warp-demo takes no positional arguments, got {argv[1:]}')
  from ivid_jax.demos import warp_demo  # pylint: disable=g-import-not-at-top
  outputs = warp_demo.run(_CONFIG.value, _WORKDIR.value)
  for name, path in outputs.items():
    if path:
      logging.info('%s: %s', name, path)
      print(f'{name}: {path}')
