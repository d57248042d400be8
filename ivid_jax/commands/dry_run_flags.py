"""The dry-run flags of `ivid-jax train` and `ivid-jax sample` (defined once; no JAX import).

`--dry_run_devices` is read by `ivid_jax.main` before JAX starts (it sets
XLA_FLAGS and JAX_PLATFORMS); it is defined here so that absl accepts it.
"""

from __future__ import annotations

from absl import flags

DRY_RUN = flags.DEFINE_bool(
    'dry_run', False, 'Compile the step (train) or the view chain (sample) for the run\'s '
    'devices from abstract shapes and print per-device memory, FLOPs and collectives; '
    'allocates no weights, trains or samples nothing and writes nothing.')
DEVICES = flags.DEFINE_integer(
    'dry_run_devices', None, 'With --dry_run: compile for this many simulated CPU devices '
    'instead of the devices at hand (to size a TPU slice or GPU node from a laptop).',
    lower_bound=1)
JSON = flags.DEFINE_string('dry_run_json', None, 'With --dry_run: also write its figures as '
                           'JSON to this file (benchmarks/plan.py reads it).')

# Simulated devices outside a dry run would train or sample on N CPU devices.
flags.register_multi_flags_validator(
    ['dry_run', 'dry_run_devices', 'dry_run_json'],
    lambda f: f['dry_run'] or (f['dry_run_devices'] is None and f['dry_run_json'] is None),
    message='--dry_run_devices and --dry_run_json need --dry_run')
