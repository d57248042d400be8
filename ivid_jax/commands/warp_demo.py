"""ivid-jax warp-demo: what the conditional model's training conditions look like.

  ivid-jax warp-demo [--config=configs/warp_demo.py] [--config.warp.ssaa=2] [--out=DIR]

Forward-backward warps of the bundled RGBD images to random training cameras
(reference 2.5): writes warp_grid.png (each image, its depth and the
conditions of random cameras, holes in magenta) and warp_swing.gif (the
condition along a swing of the camera) to --out (default outputs/warp-demo;
refused if it holds files, unless --overwrite). Well under a minute on a CPU.
Any config field can be overridden: --config.num_cameras=8.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
from ml_collections import config_flags

from ivid_jax import configs as _configs
from ivid_jax.commands import outputs

# The packaged config, given to --config by ivid_jax.main when the line has none: a default
# here would be loaded at import, and the config imports JAX (`ivid-jax --help` must not).
DEFAULT_CONFIG = os.path.join(os.path.dirname(_configs.__file__), 'warp_demo.py')
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'A get_config() file (default: the packaged configs/warp_demo.py); fields '
    'can be overridden, e.g. --config.warp.ssaa=2.', lock_config=True)
_OUT = flags.DEFINE_string('out', outputs.default_out('warp-demo'), 'Where the picture and the '
                           'animation are written (refused if it holds files, unless '
                           '--overwrite).')
flags.declare_key_flag('overwrite')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'warp-demo takes no positional arguments, got {argv[1:]}')
  if _CONFIG.value is None:
    raise app.UsageError(f'warp-demo needs --config (the packaged one: {DEFAULT_CONFIG})')
  out = outputs.check_out(_OUT.value)
  from ivid_jax.demos import warp_demo  # pylint: disable=g-import-not-at-top
  for name, path in warp_demo.run(_CONFIG.value, out).items():
    if path:
      print(f'{name}: {path}')
