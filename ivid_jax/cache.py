"""Where ivid-jax keeps what it compiles: the rasteriser's CPU kernel and XLA's executables.

Both live under one folder, `$IVID_JAX_CACHE_DIR` (default `~/.cache/ivid_jax`).
The `ivid-jax` command turns on JAX's persistent compilation cache there
(`xla/`), so a second run of a command loads its programs instead of compiling
them again: a 3x9 chain of the authors' small networks compiles in about ten
seconds on a CPU, longer than its denoising at a few steps per view.
JAX keys every entry by the program, the JAX and jaxlib versions, the backend
and the compiler flags, so a changed program or flag simply compiles anew.

Environment: `JAX_COMPILATION_CACHE_DIR` (JAX's own) wins over the default;
`IVID_JAX_COMPILATION_CACHE=0` turns the persistent cache off.
"""

from __future__ import annotations

import os

# Programs that compile faster than this are not written (JAX's default is 1 s; the chain's
# helpers, image writers and metrics take 0.3-1 s each and add up over a run).
MIN_COMPILE_SECS = 0.3


def root() -> str:
  """The cache folder: $IVID_JAX_CACHE_DIR, else ~/.cache/ivid_jax."""
  return os.environ.get('IVID_JAX_CACHE_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'ivid_jax')


def enable_compilation_cache() -> str | None:
  """Turns on JAX's persistent compilation cache (see the module docstring); its folder or None."""
  if os.environ.get('IVID_JAX_COMPILATION_CACHE', '1') == '0':
    return None
  import jax  # pylint: disable=import-outside-toplevel
  path = os.environ.get('JAX_COMPILATION_CACHE_DIR') or os.path.join(root(), 'xla')
  jax.config.update('jax_compilation_cache_dir', path)
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECS)
  return path
