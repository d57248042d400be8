"""One training run per workdir (training/workdir_lock.py).

That a run killed with SIGKILL leaves no stale lock is covered by
checkpoint_test's kill-during-save test: it resumes in the killed run's workdir.
"""

import os
import subprocess
import sys

import pytest

from ivid_jax.configs import tiny_uncond
from ivid_jax.training import train
from ivid_jax.training import workdir_lock

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def test_a_second_run_in_a_held_workdir_stops_before_touching_it(tmp_path):
  workdir = str(tmp_path / 'run')
  with workdir_lock.hold(workdir):
    with pytest.raises(workdir_lock.WorkdirInUseError, match=f'pid {os.getpid()} on '):
      train.train_and_evaluate(tiny_uncond.get_config(), workdir)
  # Nothing of the second run was written: no config, no checkpoints, no logs.
  assert sorted(os.listdir(workdir)) == [workdir_lock.LOCK_NAME]


def test_the_lock_is_released_when_its_holder_is_done(tmp_path):
  workdir = str(tmp_path)
  with workdir_lock.hold(workdir):
    pass
  with workdir_lock.hold(workdir):  # would raise if the first hold had left it locked
    with open(os.path.join(workdir, workdir_lock.LOCK_NAME), encoding='utf-8') as f:
      assert f.read() == f'pid {os.getpid()} on {os.uname().nodename}\n'
  with pytest.raises(ValueError):  # an error inside the block also releases it
    with workdir_lock.hold(workdir):
      raise ValueError('boom')
  with workdir_lock.hold(workdir):
    pass


def test_the_train_command_names_the_run_that_holds_the_workdir(tmp_path):
  workdir = str(tmp_path / 'run')
  with workdir_lock.hold(workdir):
    proc = subprocess.run([sys.executable, '-m', 'ivid_jax.main', 'train',
                           f'--config={CONFIGS}/tiny_uncond.py', f'--workdir={workdir}'],
                          capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode != 0
  assert f'is in use by another training run (pid {os.getpid()} on ' in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert sorted(os.listdir(workdir)) == [workdir_lock.LOCK_NAME]
