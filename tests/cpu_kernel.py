"""The tests' rule for the rasteriser's CPU kernel: skipped only where it cannot be built.

Where a C++ compiler is present the kernel is the default CPU path: a kernel that no longer
builds would silently send every user to the (several times slower) jnp path, so the tests
that need it fail then instead of skipping.
"""

import os
import shlex
import shutil

import jax
import pytest

from ivid_jax.geometry import raster_kernel


def compiler() -> str | None:
  """The compiler raster_kernel builds with ($CXX, default c++), if it is on this machine."""
  return shutil.which(shlex.split(os.environ.get('CXX', 'c++'))[0])


def require() -> None:
  """Returns where the kernel is built; skips where it cannot be; fails where it should be."""
  if jax.default_backend() != 'cpu':
    pytest.skip(f'the CPU kernel runs on the CPU backend, not {jax.default_backend()!r}')
  if os.environ.get('IVID_JAX_CPU_KERNEL') == '0':
    pytest.skip('the CPU kernel is turned off (IVID_JAX_CPU_KERNEL=0)')
  if compiler() is None:
    pytest.skip(f"no C++ compiler ({os.environ.get('CXX', 'c++')}) on this machine: "
                'the jnp path is used')
  ok, why = raster_kernel.available()
  if not ok:
    pytest.fail(f'a C++ compiler ({compiler()}) is present but the CPU kernel does not build: '
                f'{why}', pytrace=False)
