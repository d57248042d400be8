"""Checkpoints: a run killed in the middle of a save resumes from the previous checkpoint.

load_params and export are tested on train_test's run (its compiled step is reused there).
"""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ivid_jax.configs import tiny_uncond
from ivid_jax.training import load_params
from ivid_jax.training import train

CONFIGS = os.path.join(os.path.dirname(__file__), '..', 'configs')


def _config(**fields):
  config = tiny_uncond.get_config('micro')
  config.writer = 'basic'
  config.preview_every_steps = 0
  config.update(fields)
  return config


# The 'micro' UNet: the subprocess compiles its step in seconds, and this process's runs find
# the same step in the compilation cache the subprocess shares (tests/conftest.py).
def test_sigkill_in_the_middle_of_a_save_keeps_the_previous_checkpoint(tmp_path):
  workdir = tmp_path / 'run'
  flags = ['--config.total_steps=100000', '--config.checkpoint_every_steps=1',
           '--config.log_every_steps=1000', '--config.preview_every_steps=0',
           '--config.writer=basic']
  log = open(tmp_path / 'log.txt', 'w', encoding='utf-8')
  proc = subprocess.Popen([sys.executable, '-m', 'ivid_jax.main', 'train',
                           f'--config={CONFIGS}/tiny_uncond.py:micro', f'--workdir={workdir}',
                           *flags],
                          stdout=log, stderr=subprocess.STDOUT)
  folder = workdir / 'checkpoints'
  unfinished, deadline = [], time.monotonic() + 900
  try:
    while time.monotonic() < deadline and proc.poll() is None:
      names = os.listdir(folder) if folder.is_dir() else []
      unfinished = [n for n in names if 'tmp' in n]
      # Kill while a save is in flight (its temporary folder exists) after one finished.
      if unfinished and any(n.isdigit() for n in names):
        proc.send_signal(signal.SIGKILL)
        break
      time.sleep(0.005)
  finally:
    proc.kill()
    proc.wait()
    log.close()
  assert unfinished, open(tmp_path / 'log.txt', encoding='utf-8').read()[-3000:]
  finished = sorted(int(n) for n in os.listdir(folder) if n.isdigit())
  assert finished
  latest = max(finished)
  _, params = load_params(str(workdir), ema=False)  # the latest finished step restores
  # The next run resumes from it (and removes the unfinished folder) ...
  state = train.train_and_evaluate(_config(total_steps=latest + 2, log_every_steps=1000,
                                           checkpoint_every_steps=1000), str(workdir))
  assert int(state.step) == latest + 2
  assert not [n for n in os.listdir(folder) if 'tmp' in n]
  # ... exactly: as a run that was never interrupted.
  clean = train.train_and_evaluate(_config(total_steps=latest + 2, log_every_steps=1000,
                                           checkpoint_every_steps=1000), str(tmp_path / 'clean'))
  for a, b in zip(jax.tree.leaves(jax.device_get(clean.params)),
                  jax.tree.leaves(jax.device_get(state.params))):
    np.testing.assert_array_equal(a, b)
  del params
