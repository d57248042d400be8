"""The `ivid-jax` command.

  ivid-jax warp-demo [--config=configs/warp_demo.py] [--config.warp.ssaa=2] [--workdir=DIR]

Commands:
  warp-demo   forward-backward warps of bundled RGBD images (the conditional
              model's training conditions): writes warp_grid.png and
              warp_swing.gif to --workdir. Runs on CPU in well under a minute.

Flags:
  --config      a get_config() file (default: the packaged configs/warp_demo.py);
                any field can be overridden: --config.num_cameras=8
  --workdir     output folder (default: outputs/warp_demo)
  --helpfull    every flag, including JAX's and absl's
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ivid_jax import configs as _configs

_DEFAULT_CONFIG = os.path.join(os.path.dirname(_configs.__file__), 'warp_demo.py')

_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'A get_config() file; fields can be overridden, e.g. '
    '--config.warp.ssaa=2.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'outputs/warp_demo', 'Where outputs are written.')

COMMANDS = ('warp-demo',)


def main(argv: list[str]) -> None:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f'Usage: ivid-jax COMMAND [flags], COMMAND one of {COMMANDS}. '
                         'See ivid-jax --help.')
  if argv[1] == 'warp-demo':
    from ivid_jax.demos import warp_demo  # Imported late so that --help stays fast.
    outputs = warp_demo.run(_CONFIG.value, _WORKDIR.value)
    for name, path in outputs.items():
      if path:
        logging.info('%s: %s', name, path)
        print(f'{name}: {path}')


def run() -> None:
  """Console-script entry point."""
  # absl's --help prints the __main__ module's docstring: make it this one.
  sys.modules['__main__'].__doc__ = __doc__
  app.run(main, argv=sys.argv)


if __name__ == '__main__':
  run()
