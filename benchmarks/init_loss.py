"""What the initialisation changes: the synthetic loss curve with the authors' PyTorch init vs Flax's.

  python benchmarks/init_loss.py [--steps=300] [--every=50] [--config=configs/synthetic_uncond.py]
                                 [--data_dir=DIR]

Trains the config twice from the same seed on the same batches, once with
`init='torch'` (kaiming-uniform(a=sqrt 5) kernels, uniform biases: the
authors' PyTorch layers) and once with `init='flax'` (lecun-normal kernels,
about 1.7x the std, zero biases), and prints one table: the mean eps-MSE of
each window of --every steps (`metrics.jsonl` of each run), and the gradient
norm of the first window.
"""

from __future__ import annotations

import json
import os
import tempfile

from absl import app
from absl import flags
from ml_collections import config_flags

from ivid_jax.training import train

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), '..', 'configs', 'synthetic_uncond.py'),
    'The config to train.', lock_config=False)
_STEPS = flags.DEFINE_integer('steps', 300, 'Steps per run.')
_EVERY = flags.DEFINE_integer('every', 50, 'Window of the mean loss.')
_DATA_DIR = flags.DEFINE_string('data_dir', '', 'TFDS data_dir of the dataset.')


def _run(init: str, root: str) -> list[dict]:
  config = _CONFIG.value.copy_and_resolve_references()
  config.init = init
  config.total_steps = _STEPS.value
  config.log_every_steps = _EVERY.value
  config.checkpoint_every_steps = _STEPS.value
  config.preview_every_steps = 0
  config.writer = 'basic'
  if _DATA_DIR.value:
    config.input.data_dir = _DATA_DIR.value
  workdir = os.path.join(root, init)
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  return [r for r in records if 'loss' in r.get('scalars', {})]


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as root:
    runs = {init: _run(init, root) for init in ('torch', 'flax')}
  print(f'# {_CONFIG.value.input.dataset}/{_CONFIG.value.input.tfds_config}, '
        f'{_CONFIG.value.model.model_channels} channels, batch {_CONFIG.value.input.batch_size}, '
        f'lr {_CONFIG.value.optim.lr}; mean eps-MSE per {_EVERY.value} steps')
  print('| steps | torch init (authors) | flax init | flax / torch |')
  print('|---|---:|---:|---:|')
  for a, b in zip(runs['torch'], runs['flax']):
    step = a['step']
    la, lb = a['scalars']['loss'], b['scalars']['loss']
    print(f'| {step - _EVERY.value + 1}-{step} | {la:.4f} | {lb:.4f} | {lb / la:.2f} |')
  ga, gb = (runs[k][0]['scalars']['grad_norm'] for k in ('torch', 'flax'))
  print(f'| gradient norm, first window | {ga:.3f} | {gb:.3f} | {gb / ga:.2f} |')


if __name__ == '__main__':
  app.run(main)
