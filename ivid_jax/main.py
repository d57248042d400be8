"""The `ivid-jax` command.

  ivid-jax warp-demo [--config=configs/warp_demo.py] [--config.warp.ssaa=2] [--workdir=DIR]

Commands:
  warp-demo   forward-backward warps of bundled RGBD images (the conditional
              model's training conditions): writes warp_grid.png and
              warp_swing.gif to --workdir. Runs on CPU in well under a minute.
  convert-checkpoint SRC DST
              the authors' PyTorch UNet weights (SRC: a .pt state_dict, read
              with torch if installed, or an .npz of the same tensors) -> an
              orbax checkpoint of Flax params at DST, for the network of
              --config's `model` section or of --backbone (the authors' JSON
              config, or its backbone args). Every tensor must map.

Flags:
  --config      a get_config() file (default: the packaged configs/warp_demo.py);
                any field can be overridden: --config.num_cameras=8
  --workdir     output folder (default: outputs/warp_demo)
  --backbone    convert-checkpoint: a JSON file of the authors' backbone args
  --helpfull    every flag, including JAX's and absl's
"""

from __future__ import annotations

import json
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
_BACKBONE = flags.DEFINE_string(
    'backbone', None, 'convert-checkpoint: JSON file with the authors\' backbone args (or '
    'their whole config); default: the `model` section of --config.')

COMMANDS = {'warp-demo': 0, 'convert-checkpoint': 2}  # command -> positional arguments


def _backbone_args() -> dict:
  if _BACKBONE.value:
    with open(_BACKBONE.value, encoding='utf-8') as f:
      try:
        args = json.load(f)
      except json.JSONDecodeError as e:
        raise app.UsageError(f'{_BACKBONE.value}: not valid JSON ({e})') from e
    return args.get('backbone', {}).get('args', args)
  if 'model' not in _CONFIG.value:
    raise app.UsageError('convert-checkpoint needs --backbone=JSON or a --config with a `model` '
                         'section (e.g. configs/imagenet128_uncond.py)')
  return dict(_CONFIG.value.model)


def main(argv: list[str]) -> None:
  if len(argv) < 2 or argv[1] not in COMMANDS or len(argv) != 2 + COMMANDS[argv[1]]:
    raise app.UsageError(f'Usage: ivid-jax COMMAND [ARGS] [flags], COMMAND one of '
                         f'{list(COMMANDS)}. See ivid-jax --help.')
  if argv[1] == 'convert-checkpoint':
    from ivid_jax import convert  # pylint: disable=g-import-not-at-top
    src, dst = argv[2], argv[3]
    try:
      model, params = convert.load_torch_state_dict(convert.read_state_dict(src),
                                                    _backbone_args(), source=src)
      path = convert.save_params(params, dst)
    except (ValueError, FileNotFoundError) as e:
      raise app.UsageError(str(e)) from e
    print(f'converted {convert.param_count(params):,} parameters of {src} -> {path}')
  elif argv[1] == 'warp-demo':
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
