"""The one XLA:CPU flag this project sets by default: convolutions off YNNPACK.

jaxlib 0.10 hands every 2-D convolution on the CPU to YNNPACK. For the weight gradient of a
3x3 convolution (a "convolution" whose kernel is the whole H x W output gradient) its
kernels are 2-4x slower than XLA's Eigen path, which made our training step 2.2x PyTorch's
(benchmarks/unet.py; docs/performance.md, "The UNet training step"). Forward and input-gradient convolutions run
at the same speed either way, and YNNPACK's reductions and matmuls, which the step also
uses, stay on. No rewrite of the convolution in JAX reaches Eigen's weight gradient while
YNNPACK claims convolutions (an im2col or per-tap matmul, a 1-D or 3-D convolution, a
padded kernel: all 1.3-70x slower, measured), so this is a compiler flag:

  --xla_cpu_experimental_ynn_fusion_type=-individual_convolution

`apply()` (run by `import ivid_jax`) appends it to XLA_FLAGS when all of these hold, and
otherwise leaves XLA_FLAGS alone:
  - the user's XLA_FLAGS does not set `xla_cpu_experimental_ynn_fusion_type` (theirs wins);
  - IVID_JAX_XLA_CPU_DEFAULTS is not '0' (the opt-out);
  - jaxlib is a version this flag value was tested on (0.10.x: an unknown flag value
    aborts XLA at start-up);
  - JAX has not initialised its backends yet (XLA reads XLA_FLAGS once, then).
The flag names the CPU compiler only: TPU and GPU compilation never read it.
"""

from __future__ import annotations

import logging
import os
import sys

FLAG = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'
_NAME = 'xla_cpu_experimental_ynn_fusion_type'
_OPT_OUT = 'IVID_JAX_XLA_CPU_DEFAULTS'
_TESTED_JAXLIB = ((0, 10),)

# What apply() did: 'set', 'user' (their own setting), 'opted-out', 'untested-jaxlib',
# 'too-late' (JAX was initialised first), or None before it ran.
status: str | None = None
_warned = False


def _jaxlib_minor() -> tuple[int, ...]:
  import jaxlib.version  # pylint: disable=import-outside-toplevel
  return tuple(int(p) for p in jaxlib.version.__version__.split('.')[:2])


def _backends_initialised() -> bool:
  if 'jax' not in sys.modules:  # nothing initialised; and `ivid-jax --help` stays JAX-free
    return False
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a JAX without that helper: assume the worst
    return True


def apply() -> str:
  """Appends FLAG to XLA_FLAGS if the conditions in the module docstring hold; the status."""
  global status
  flags = os.environ.get('XLA_FLAGS', '')
  if _NAME in flags:
    status = 'user'
  elif os.environ.get(_OPT_OUT, '1') == '0':
    status = 'opted-out'
  elif _jaxlib_minor() not in _TESTED_JAXLIB:
    status = 'untested-jaxlib'
  elif _backends_initialised():
    status = 'too-late'
  else:
    os.environ['XLA_FLAGS'] = f'{flags} {FLAG}'.strip()
    status = 'set'
  return status


def warn_if_too_late() -> None:
  """Once per process: a CPU training step is about 2x slower because apply() came too late."""
  global _warned
  if status == 'too-late' and not _warned:
    _warned = True
    logging.warning(
        'JAX was initialised before ivid_jax was imported, so XLA:CPU runs convolution '
        'gradients through YNNPACK (about 2x slower training on CPU). Import ivid_jax '
        'first, or export XLA_FLAGS=%s', FLAG)
