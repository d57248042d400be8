"""Checkpoints: load_params and export for the sampler, and a run killed in the middle of a save."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ivid_jax.configs import tiny_uncond
from ivid_jax.models import model_file
from ivid_jax.training import checkpoint
from ivid_jax.training import load_params
from ivid_jax.training import train

CONFIGS = os.path.join(os.path.dirname(__file__), '..', 'configs')


def _config(**fields):
  config = tiny_uncond.get_config()
  config.writer = 'basic'
  config.preview_every_steps = 0
  config.update(fields)
  return config


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  state = train.train_and_evaluate(
      _config(total_steps=4, log_every_steps=4, checkpoint_every_steps=2), workdir)
  return workdir, jax.tree.map(np.asarray, jax.device_get(state))


def test_load_params_gives_the_ema_or_the_raw_params_of_any_step(run):
  workdir, state = run
  model, ema = load_params(workdir)
  assert model.in_channels == 4 and model.image_size == 16
  for a, b in zip(jax.tree.leaves(state.ema[0]), jax.tree.leaves(ema)):
    np.testing.assert_array_equal(a, b)
  _, second = load_params(workdir, ema=0.99)  # tiny_uncond's decays: (0.9, 0.99)
  for a, b in zip(jax.tree.leaves(state.ema[1]), jax.tree.leaves(second)):
    np.testing.assert_array_equal(a, b)
  _, raw = load_params(workdir, ema=False)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(raw)):
    np.testing.assert_array_equal(a, b)
  _, earlier = load_params(workdir, ema=False, step=2)
  assert not np.array_equal(earlier['out_2']['kernel'], raw['out_2']['kernel'])
  with pytest.raises(ValueError, match='no checkpoint of step 3'):
    load_params(workdir, step=3)
  with pytest.raises(ValueError, match='no EMA of rate 0.5'):
    load_params(workdir, ema=0.5)
  with pytest.raises(FileNotFoundError, match='not a training workdir'):
    load_params(os.path.dirname(workdir))


def test_export_writes_a_model_file_the_sampler_loads(run, tmp_path):
  workdir, state = run
  out = str(tmp_path / 'uncond.msgpack')
  result = subprocess.run([sys.executable, '-m', 'ivid_jax.main', 'export', f'--workdir={workdir}',
                           f'--out={out}'], capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'uncond network, step 4, EMA 0.9' in result.stdout
  loaded = model_file.load(out, expect_kind='uncond')
  assert loaded.meta['step'] == 4 and loaded.meta['config']['optim']['lr'] == 1e-3
  assert loaded.diffusion == {'schedule': 'linear', 'num_steps': 1000}
  assert loaded.model == checkpoint.make_model(checkpoint.read_config(workdir))
  for a, b in zip(jax.tree.leaves(state.ema[0]), jax.tree.leaves(loaded.params)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # a training subprocess compiles its own step: about a minute on 2 cores
def test_sigkill_in_the_middle_of_a_save_keeps_the_previous_checkpoint(tmp_path):
  workdir = tmp_path / 'run'
  flags = ['--config.total_steps=100000', '--config.checkpoint_every_steps=1',
           '--config.log_every_steps=1000', '--config.preview_every_steps=0',
           '--config.writer=basic']
  log = open(tmp_path / 'log.txt', 'w', encoding='utf-8')
  proc = subprocess.Popen([sys.executable, '-m', 'ivid_jax.main', 'train',
                           f'--config={CONFIGS}/tiny_uncond.py', f'--workdir={workdir}', *flags],
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
