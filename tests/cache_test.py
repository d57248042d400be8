"""The persistent compilation cache the `ivid-jax` command turns on (ivid_jax/cache.py)."""

import os
import subprocess
import sys

_PROGRAM = '''
import jax, jax.numpy as jnp
from ivid_jax import cache
print(cache.enable_compilation_cache())
print(float(jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T)(jnp.ones((64, 64))).sum()))
'''


def _run(env):
  result = subprocess.run([sys.executable, '-c', _PROGRAM], capture_output=True, text=True,
                          timeout=300, check=False, env=env)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout.split()


def _env(tmp_path, **extra):
  env = {k: v for k, v in os.environ.items()
         if k not in ('JAX_COMPILATION_CACHE_DIR', '_IVID_JAX_TEST_CACHE')}
  # Every program is written (the default skips those that compile in under 0.3 s).
  env.update(IVID_JAX_CACHE_DIR=str(tmp_path), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             **extra)
  return env


def test_a_second_run_loads_what_the_first_compiled(tmp_path):
  first = _run(_env(tmp_path))
  assert first[0] == str(tmp_path / 'xla')
  entries = sorted(os.listdir(tmp_path / 'xla'))
  assert entries  # the program was written
  second = _run(_env(tmp_path))
  assert second == first and sorted(os.listdir(tmp_path / 'xla')) == entries


def test_the_cache_can_be_turned_off_or_moved(tmp_path):
  off = _run(_env(tmp_path / 'a', IVID_JAX_COMPILATION_CACHE='0'))
  assert off[0] == 'None' and not (tmp_path / 'a').exists()
  moved = _run(_env(tmp_path / 'b', JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'mine')))
  assert moved[0] == str(tmp_path / 'mine') and os.listdir(tmp_path / 'mine')
