"""The `ivid-jax` command: one subcommand per job of the method.

  ivid-jax COMMAND [ARGS] [--flags]   run a command
  ivid-jax COMMAND --help             what it does and its flags
  ivid-jax --help                     this list

A failure prints one line, `ivid-jax COMMAND: error: ...`, and exits with 1 (a wrong flag or
argument: 2, with the command's help); --traceback (or IVID_JAX_TRACEBACK=1) shows the
traceback instead. Libraries' INFO logs go to ivid-jax.log in the output folder (or the
training workdir); --verbosity=1 shows them on the console too.
"""

from __future__ import annotations

import importlib
import logging
import os
import shlex
import sys
from types import ModuleType
from typing import NamedTuple, NoReturn, Sequence

# Only absl and the command modules' flag definitions are imported before a command runs:
# `ivid-jax --help` and `ivid-jax COMMAND --help` never import JAX.
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
LOG_NAME = 'ivid-jax.log'  # the libraries' INFO logs, in the output folder or workdir

_TRACEBACK = flags.DEFINE_bool('traceback', False, 'On an error, show the traceback instead of '
                               'one line (also: IVID_JAX_TRACEBACK=1).')


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


def command_help(module: ModuleType) -> str:
  """A command's help: its module docstring and its own flags (shared ones included)."""
  text = module.__doc__.rstrip() + '\n'
  own = flags.FLAGS.module_help(module.__name__)
  if own:
    text += f'\nflags:\n{own}\n'
  return text + ("\n--traceback shows an error's traceback; --helpfull lists every flag, "
                 "JAX's and absl's included.\n")


def _load(name: str) -> ModuleType:
  if name not in COMMANDS:
    raise ValueError(f'unknown command {name!r}; the commands are {", ".join(COMMANDS)}')
  return importlib.import_module(COMMANDS[name].module)


def _with_default_config(module: ModuleType, args: list[str]) -> list[str]:
  """args with `--config=<module.DEFAULT_CONFIG>` first when the command has one and none is
  given (a default on the flag itself would load the config, which may import JAX, at import:
  commands/warp_demo.py)."""
  default = getattr(module, 'DEFAULT_CONFIG', None)
  if default is None or any(a == '--config' or a.startswith('--config=') for a in args):
    return args
  return [f'--config={default}'] + args


def split_line(line: str | Sequence[str]) -> list[str]:
  """An `ivid-jax COMMAND ...` line (a string, shell-quoted, or argv) -> [COMMAND, args...]."""
  argv = shlex.split(line) if isinstance(line, str) else list(line)
  if argv and os.path.basename(argv[0]) in ('ivid-jax', 'ivid_jax.main'):
    argv = argv[1:]
  if not argv:
    raise ValueError('no command given')
  return argv


def parse_only(line: str | Sequence[str]) -> tuple[str, list[str]]:
  """Parses an `ivid-jax COMMAND --flags` line without running the command.

  Flags are validated as the command would see them (config files loaded, config overrides
  applied); nothing runs and nothing is written (a config file imports what it imports).
  Flags are process-global (absl): parse the lines of one command per process, since two
  commands may define flags of the same name.

  Returns:
    (command name, its positional arguments).

  Raises:
    ValueError: an unknown command, or a count of positional arguments the command does not
      take (its module's POSITIONAL = (min, max), default none); absl.flags.Error: an unknown
      flag or a bad value (a config file that does not load included).
  """
  argv = split_line(line)
  name, args = argv[0], argv[1:]
  module = _load(name)
  flags.FLAGS.unparse_flags()
  for flag_name in [f for f in flags.FLAGS if '.' in f]:
    delattr(flags.FLAGS, flag_name)  # a config's --config.FIELD flags: the next parse makes its own
  full = [f'ivid-jax {name}'] + _with_default_config(module, args)
  saved, sys.argv = sys.argv, full  # config_flags reads --config.FIELD overrides from sys.argv
  try:
    rest = _parse_flags(full)
  finally:
    sys.argv = saved
  low, high = getattr(module, 'POSITIONAL', (0, 0))
  if not low <= len(rest) - 1 <= high:
    raise ValueError(f'ivid-jax {name} takes {low}..{high} positional argument(s), got '
                     f'{rest[1:]}')
  return name, rest[1:]


def _parse_flags(argv: list[str]) -> list[str]:
  """FLAGS(argv), every failure a flags.Error (a config override of an unknown field raises
  AttributeError or KeyError inside ml_collections)."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise flags.IllegalFlagValueError(
        f'{type(e).__name__}: {e} (a --config.FIELD override must name a field of the config)'
    ) from e
  # A config file that fails to load is kept as an object that raises when used: load it now.
  error = getattr(flags.FLAGS['config'].value, '_error', None) if 'config' in flags.FLAGS else None
  if error is not None:
    raise flags.IllegalFlagValueError(
        f'--config={flags.FLAGS["config"].serialize().split("=", 1)[-1]}: '
        + ' '.join(str(error).split())) from error
  return rest


def _traceback_wanted() -> bool:
  return _TRACEBACK.value or os.environ.get('IVID_JAX_TRACEBACK', '0') not in ('', '0')


def _usage_error(name: str, module: ModuleType, message: str) -> NoReturn:
  sys.stderr.write(command_help(module))
  sys.stderr.write(f'\nivid-jax {name}: error: {message}\n')
  sys.exit(2)


def _one_line(e: BaseException) -> str:
  text = ' '.join(str(e).split()) or type(e).__name__
  if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)) and e.filename:
    text = f'{e.filename}: {e.strerror}'  # "[Errno 2] ..." reads worse than the file's name
  return text


def _log_folder() -> str | None:
  """Where the libraries' INFO logs go: --out (a folder, or a file's folder), else --workdir;
  None (no file) for a --dry_run, which writes nothing."""
  if 'dry_run' in flags.FLAGS and flags.FLAGS['dry_run'].value:
    return None
  for name in ('out', 'workdir'):
    if name in flags.FLAGS and flags.FLAGS[name].value:
      path = flags.FLAGS[name].value
      return os.path.dirname(path) or '.' if os.path.splitext(path)[1] else path
  return None


class _LazyFileHandler(logging.FileHandler):
  """A log file opened (its folder made) at the first record, so a run that logs nothing at
  INFO leaves no file, and an output folder is not created before the command checks it."""

  def __init__(self, path: str):
    super().__init__(path, delay=True, encoding='utf-8')

  def _open(self):
    os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
    return super()._open()


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _on_console(record: logging.LogRecord) -> bool:
  """Warnings and errors, and ivid-jax's own one-line INFO (training's loss and rate, a
  demo's stages); libraries' INFO and multi-line tables (the parameter count) only in the
  log file."""
  if record.levelno >= logging.WARNING:
    return True
  return (record.levelno >= logging.INFO and record.pathname.startswith(_PACKAGE_DIR)
          and '\n' not in record.getMessage())


def route_library_logs(folder: str | None) -> str | None:
  """The console gets `_on_console`'s records, unless --verbosity was given (then absl's own
  behaviour: every record at that verbosity); every INFO record goes to
  <folder>/ivid-jax.log (local folders only: a gs:// workdir keeps no such file). Returns
  the log file's path, or None."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  if flags.FLAGS['verbosity'].present:
    return None
  absl_logging.get_absl_handler().addFilter(_on_console)
  if folder is None or '://' in folder:
    return None
  handler = _LazyFileHandler(os.path.join(os.path.abspath(folder), LOG_NAME))
  handler.setLevel(logging.INFO)
  handler.setFormatter(absl_logging.PythonFormatter())
  logging.getLogger().addHandler(handler)
  return handler.baseFilename


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
  module = _load(name)
  if any(a in _HELP for a in argv[2:]):
    sys.stdout.write(command_help(module))
    sys.exit(0)
  # absl prints __main__'s docstring for --helpfull: make it the command's.
  sys.modules['__main__'].__doc__ = module.__doc__

  def parse(args: list[str]) -> list[str]:
    try:
      return _parse_flags(args)
    except flags.Error as e:
      _usage_error(name, module, str(e))

  def main(args: list[str]) -> None:
    route_library_logs(_log_folder())
    try:
      cache.enable_compilation_cache()
      module.main(args)
    except app.UsageError as e:
      _usage_error(name, module, str(e))
    except KeyboardInterrupt:
      if _traceback_wanted():
        raise
      sys.stderr.write(f'\nivid-jax {name}: interrupted\n')
      sys.exit(130)
    except Exception as e:  # pylint: disable=broad-except
      if _traceback_wanted():
        raise
      sys.stderr.write(f'ivid-jax {name}: error: {_one_line(e)}\n')
      sys.exit(1)

  full = [f'ivid-jax {name}'] + _with_default_config(module, argv[2:])
  sys.argv = full  # config_flags reads --config.FIELD overrides from sys.argv
  app.run(main, argv=full, flags_parser=parse)


if __name__ == '__main__':
  run()
