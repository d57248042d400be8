r"""ivid-jax train: trains either IVID network (G_u or G_c) from a config, resuming in its workdir.

  ivid-jax train --config=configs/synthetic_uncond.py --workdir=runs/uncond
  ivid-jax train --config=configs/synthetic_cond.py --workdir=runs/cond \
      --config.init_from=runs/uncond --config.optim.lr=1e-4
  ivid-jax train --config=configs/imagenet128_uncond.py --workdir=gs://bucket/uncond \
      --distributed                    # every host of a Cloud TPU pod runs the same command

Any config field can be overridden (--config.FIELD=VALUE). The workdir gets
config.json, checkpoints/ (orbax; a rerun resumes from the latest), previews/
(PNG) and the logs (TensorBoard with `pip install 'ivid-jax[tensorboard]'`, else
metrics.jsonl). Multi-host: --distributed on Cloud TPU VMs (JAX finds the
pod), or --coordinator_address=HOST:PORT --num_processes=N --process_id=I
elsewhere, one process per host.

  ivid-jax train --config=configs/imagenet128_cond.py --config.parallel.fsdp=True \
      --dry_run --dry_run_devices=8   # per-device memory, FLOPs, collectives; no workdir
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags

from ivid_jax.commands import dry_run_flags

flags.adopt_module_key_flags(dry_run_flags)

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'A get_config() file, e.g. configs/synthetic_uncond.py (path[:arg]).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the run lives (and resumes from).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Join a multi-host run (jax.distributed.initialize); JAX detects Cloud '
    'TPU pods and SLURM, else give the three flags below.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'HOST:PORT of process 0 (multi-host runs off Cloud TPU).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes (hosts).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'train takes no positional arguments, got {argv[1:]}')
  if dry_run_flags.DRY_RUN.value:
    if _CONFIG.value is None:
      raise app.UsageError('train --dry_run needs --config=CONFIG.py')
    from ivid_jax.training import dry_run  # pylint: disable=g-import-not-at-top
    dry_run.main(_CONFIG.value, config_flags.get_config_filename(flags.FLAGS['config']),
                 dry_run_flags.JSON.value)
    return
  if _CONFIG.value is None or not _WORKDIR.value:
    raise app.UsageError('train needs --config=CONFIG.py and --workdir=DIR')
  from ivid_jax.training import parallel  # pylint: disable=g-import-not-at-top
  if _DISTRIBUTED.value or _COORDINATOR.value:
    # Before the trainer's modules are imported: they touch the devices.
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  from ivid_jax.training import train  # pylint: disable=g-import-not-at-top
  # A runtime failure (NonFiniteError, a workdir in use, a missing file) is one line, exit 1.
  state = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  print(f'trained to step {int(state.step)}: {_WORKDIR.value}')
