"""ivid-jax export: a training workdir's EMA network -> one self-describing model file.

  ivid-jax export --workdir=runs/synthetic_uncond --out=synthetic_uncond.msgpack
  ivid-jax export --workdir=runs/cond --out=cond.msgpack --step=40000 --ema=0.9999

The file (ivid_jax.models.model_file) holds the UNet's fields, the network
kind (uncond / cond), the diffusion schedule, the step and the run's config;
`ivid-jax sample`, the demo and --config.init_from read it. An existing --out
is refused unless --overwrite (then replaced only once the new file is complete).
"""

from __future__ import annotations

from absl import app
from absl import flags

from ivid_jax.commands import outputs

_WORKDIR = flags.DEFINE_string('workdir', None, 'The training workdir (ivid-jax train --workdir).')
_OUT = flags.DEFINE_string('out', None, 'The model file to write (required; refused if it exists, '
                           'unless --overwrite).')
flags.declare_key_flag('overwrite')
_STEP = flags.DEFINE_integer('step', None, 'A checkpointed step (default: the latest).')
_EMA = flags.DEFINE_string('ema', 'first', "Which params: 'first' (the first rate of "
                           "config.ema.decays), a rate such as 0.9999, or 'none' (raw params).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'export takes no positional arguments, got {argv[1:]}')
  if not _WORKDIR.value or not _OUT.value:
    raise app.UsageError('export needs --workdir=DIR and --out=FILE')
  ema = {'first': True, 'none': False}.get(_EMA.value)
  if ema is None:
    try:
      ema = float(_EMA.value)
    except ValueError:
      raise app.UsageError(f"--ema must be 'first', 'none' or a rate, got {_EMA.value!r}") from None
  out = outputs.check_out(_OUT.value, is_file=True)
  from ivid_jax.training import checkpoint  # pylint: disable=g-import-not-at-top
  path, info = checkpoint.export(_WORKDIR.value, out, ema=ema, step=_STEP.value)
  print(f'exported the {info} -> {path}')
