r"""ivid-jax sweep: one training run per point of a sweep file, each in its own workdir.

  ivid-jax sweep --config=configs/synthetic_uncond.py \
      --sweep=configs/synthetic_uncond_sweep.py --workdir=runs/sweep          # print commands
  ivid-jax sweep --config=... --sweep=... --workdir=runs/sweep --run          # run them here

A sweep file defines get_sweep() returning a list of override dicts
({'optim.lr': 2e-4, 'seed': 1}, ...). Each point trains in
ROOT/<its overrides> (e.g. runs/sweep/optim.lr=0.0002,seed=1); without --run
the command prints one `ivid-jax train` line per point, for a job scheduler.
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'The base get_config() file (path[:arg]).', lock_config=True)
_SWEEP = flags.DEFINE_string('sweep', None, 'A sweep file defining get_sweep().')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The root folder of the sweep\'s workdirs.')
_RUN = flags.DEFINE_bool('run', False, 'Train every point here, one after another.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'sweep takes no positional arguments, got {argv[1:]}')
  if _CONFIG.value is None or not _SWEEP.value or not _WORKDIR.value:
    raise app.UsageError('sweep needs --config=CONFIG.py, --sweep=SWEEP.py and --workdir=ROOT')
  from ivid_jax.training import sweep  # pylint: disable=g-import-not-at-top
  try:
    points = sweep.load_sweep(_SWEEP.value)
    for point in points:
      sweep.apply(_CONFIG.value, point)  # unknown fields fail before anything runs
  except (ValueError, KeyError) as e:
    raise app.UsageError(f'--sweep={_SWEEP.value}: {e}') from e
  config_arg = flags.FLAGS['config'].serialize().split('=', 1)[1]
  if not _RUN.value:
    print('\n'.join(sweep.commands(config_arg, points, _WORKDIR.value)))
    return
  for workdir in sweep.run(_CONFIG.value, points, _WORKDIR.value):
    print(f'trained: {workdir}')
