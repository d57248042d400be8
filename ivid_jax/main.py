"""The `ivid-jax` command: one subcommand per job of the method.

  ivid-jax COMMAND [ARGS] [--flags]   run a command
  ivid-jax COMMAND --help             what it does and its flags
  ivid-jax --help                     this list
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import NamedTuple

from absl import app
from absl import flags

from ivid_jax import cache


class Command(NamedTuple):
  module: str  # defines the command's flags and main(argv); its docstring is the help
  summary: str


# In the order a user meets them.
COMMANDS: dict[str, Command] = {
    'demo': Command('ivid_jax.commands.demo',
                    '3D scenes from the shipped models: grids, free-view videos, meshes, '
                    'image-to-3D, scores (no download, a few minutes on a CPU)'),
    'warp-demo': Command('ivid_jax.commands.warp_demo',
                         "forward-backward warps of the bundled images (the conditional "
                         "model's training conditions)"),
    'estimate-depth': Command('ivid_jax.commands.estimate_depth',
                              "monocular depth maps for a folder or TFDS dataset, in the authors' "
                              'format'),
    'convert-checkpoint': Command('ivid_jax.commands.convert_checkpoint',
                                  "the authors' released PyTorch weights -> an ivid-jax model file"),
    'sample': Command('ivid_jax.commands.sample',
                      '3D scenes view by view (or image-to-3D), in the authors\' output layout'),
    'render': Command('ivid_jax.commands.render',
                      'free-view videos and images of scenes (fusion renderer), mesh export'),
    'train': Command('ivid_jax.commands.train',
                     'train either network (G_u or G_c) from a config, on any number of devices '
                     'and hosts'),
    'export': Command('ivid_jax.commands.export',
                      "a training workdir's EMA network -> an ivid-jax model file"),
    'sweep': Command('ivid_jax.commands.sweep',
                     'one training run per point of a sweep file (print or run them)'),
    'eval': Command('ivid_jax.commands.eval',
                    "FID, KID and IS of generated images by the authors' protocol"),
    'eval-3d': Command('ivid_jax.commands.eval_3d',
                       '3D consistency of generated scenes: reprojection, TSED, flatness'),
}

_HELP = ('-h', '--help', '--helpshort')


def simulate_devices(args: list[str]) -> None:
  """`--dry_run_devices=N`: N simulated CPU devices, set where JAX reads it when it starts."""
  for i, arg in enumerate(args):
    if arg.split('=', 1)[0] != '--dry_run_devices':
      continue
    value = arg.split('=', 1)[1] if '=' in arg else (args[i + 1] if i + 1 < len(args) else '')
    if not value.isdigit() or int(value) < 1:
      return  # absl reports the bad value
    kept = [f for f in os.environ.get('XLA_FLAGS', '').split()
            if not f.startswith('--xla_force_host_platform_device_count')]
    os.environ['XLA_FLAGS'] = ' '.join(kept + [f'--xla_force_host_platform_device_count={value}'])
    os.environ['JAX_PLATFORMS'] = 'cpu'


def usage() -> str:
  """The synopsis: this module's docstring and every command with its summary."""
  width = max(len(name) for name in COMMANDS)
  lines = [f'  {name:<{width}}  {cmd.summary}' for name, cmd in COMMANDS.items()]
  return f'{__doc__.rstrip()}\n\nCommands:\n' + '\n'.join(lines) + '\n'


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point: `ivid-jax COMMAND ...`."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in _HELP or argv[1] == 'help':
    asked = len(argv) >= 2
    (sys.stdout if asked else sys.stderr).write(usage())
    sys.exit(0 if asked else 2)
  name = argv[1]
  if name not in COMMANDS:
    sys.stderr.write(f'ivid-jax: unknown command {name!r}\n\n{usage()}')
    sys.exit(2)
  simulate_devices(argv[2:])  # before the command imports JAX
  module = importlib.import_module(COMMANDS[name].module)
  if any(a in _HELP for a in argv[2:]):
    sys.stdout.write(module.__doc__.rstrip() + '\n')
    own = flags.FLAGS.module_help(module.__name__)
    if own:
      sys.stdout.write(f'\nflags:\n{own}\n')
    sys.stdout.write('\n(--helpfull lists every flag, JAX\'s and absl\'s included.)\n')
    sys.exit(0)
  # absl prints __main__'s docstring on usage errors: make it the command's.
  sys.modules['__main__'].__doc__ = module.__doc__
  cache.enable_compilation_cache()
  app.run(module.main, argv=[f'ivid-jax {name}'] + argv[2:])


if __name__ == '__main__':
  run()
