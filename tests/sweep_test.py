"""Sweeps: override points, their workdir names, the printed commands and the dry run."""

import os
import subprocess
import sys

import pytest

from ivid_jax.configs import tiny_uncond
from ivid_jax.training import sweep

ROOT = os.path.join(os.path.dirname(__file__), '..')


def test_workdir_names_and_commands():
  point = {'optim.lr': 2e-4, 'ema.decays': (0.999, 0.9999), 'seed': 1}
  assert sweep.workdir_name(point) == 'ema.decays=0.999-0.9999,optim.lr=0.0002,seed=1'
  (line,) = sweep.commands('configs/x.py', [point], '/runs')
  assert line == ("ivid-jax train --config=configs/x.py "
                  "--workdir=/runs/ema.decays=0.999-0.9999,optim.lr=0.0002,seed=1 "
                  "'--config.ema.decays=(0.999,0.9999)' --config.optim.lr=0.0002 --config.seed=1")


def test_apply_sets_fields_and_rejects_unknown_ones():
  config = sweep.apply(tiny_uncond.get_config(), {'optim.lr': 0.5, 'ema.decays': [0.9]})
  assert config.optim.lr == 0.5 and config.ema.decays == (0.9,)
  assert tiny_uncond.get_config().optim.lr != 0.5  # the base config is not changed
  with pytest.raises(KeyError, match='no field'):
    sweep.apply(config, {'optim.learning_rate': 1.0})


def test_load_sweep_rejects_bad_files(tmp_path):
  path = tmp_path / 'bad.py'
  path.write_text('def get_sweep():\n  return [{"seed": 1}, {"seed": 1}]\n')
  with pytest.raises(ValueError, match='repeated'):
    sweep.load_sweep(str(path))
  with pytest.raises(FileNotFoundError):
    sweep.load_sweep(str(tmp_path / 'missing.py'))


def test_dry_run_prints_one_train_command_per_point(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'ivid_jax.main', 'sweep',
       f'--config={ROOT}/configs/synthetic_uncond.py',
       f'--sweep={ROOT}/configs/synthetic_uncond_sweep.py', f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 6 and all(line.startswith('ivid-jax train --config=') for line in lines)
  assert f'--workdir={tmp_path}/ema.decays=0.999,optim.lr=0.0001 ' in lines[0]
  assert not os.listdir(tmp_path)  # a dry run trains nothing
