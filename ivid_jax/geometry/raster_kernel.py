"""The rasteriser's CPU kernel: built at first use, called through XLA's FFI.

`raster_kernel.cc` (beside this file) holds one triangle rasteriser (the setup,
fill rule and packed visibility key of `raster.py`) with two entry points:

- `rasterize`: `raster.rasterize` for a batch of meshes (the training warp);
- `accumulate`: stacks of grid meshes drawn into frames, each view with its
  own z-buffer, shaded with the authors' aggregation weights and accumulated
  over views (the sampler's conditions and the exact fusion renderer).

Both agree with the jnp path to the last bit except the angle weights' exp (a
few ulp). The library is compiled on first use with the machine's C++
compiler against the XLA FFI headers that jaxlib ships
(`jax.ffi.include_dir()`), cached under `$IVID_JAX_CACHE_DIR` (default
`~/.cache/ivid_jax`) by a hash of the source, compiler, flags, CPU and jaxlib
version, and registered with `jax.ffi.register_ffi_target`. No build step at
install time and no extra Python dependency: where no compiler is found,
`available()` says why and `resolve('auto')` picks the jnp path (which is also
what GPUs and TPUs run).

Environment: `CXX` picks the compiler (default `c++`); `IVID_JAX_CPU_KERNEL=0`
turns the kernel off; `IVID_JAX_KERNEL_THREADS` caps its threads (default: the
CPUs this process may run on).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shlex
import subprocess
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ivid_jax import atomic
from ivid_jax import cache
from ivid_jax.geometry import cameras

RASTERIZE_TARGET = 'ivid_rasterize'
ACCUMULATE_TARGET = 'ivid_accumulate'
KERNELS = ('auto', 'jnp', 'cpu')
_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'raster_kernel.cc')
_FLAGS = ('-O3', '-std=c++20', '-shared', '-fPIC', '-pthread', '-ffp-contract=off',
          '-fno-math-errno', '-fno-trapping-math', '-w')
# Tuned for this CPU where the compiler can (the library is cached per CPU model and
# flags, so a shared cache directory never hands one machine's build to another).
_NATIVE = ('-march=native',)

_lock = threading.Lock()
_state: dict[str, object] = {}


class KernelUnavailable(RuntimeError):
  """The CPU kernel could not be built or loaded; the message says why."""


def _cache_dir() -> str:
  return cache.root()


def _build() -> str:
  """Compiles the kernel (or finds it cached): the path of the shared library."""
  cxx = shlex.split(os.environ.get('CXX', 'c++'))
  include = jax.ffi.include_dir()
  with open(_SOURCE, 'rb') as f:
    source = f.read()
  try:
    version = subprocess.run(cxx + ['--version'], capture_output=True, text=True, check=True,
                             timeout=60).stdout.splitlines()[0]
  except (OSError, subprocess.SubprocessError, IndexError) as e:
    raise KernelUnavailable(f'no C++ compiler ({" ".join(cxx)}: {e}); set CXX') from e
  key = hashlib.sha256(b'\0'.join([source, version.encode(), jax.__version__.encode(),
                                   ' '.join(_FLAGS + _NATIVE).encode(), _cpu_id().encode()]))
  cache = _cache_dir()
  path = os.path.join(cache, f'raster_kernel_{key.hexdigest()[:16]}.so')
  if os.path.exists(path):
    return path
  os.makedirs(cache, exist_ok=True)
  try:
    _compile(cxx + list(_FLAGS) + list(_NATIVE), include, path)
  except KernelUnavailable:
    # Compilers without -march=native for this target (some clang on arm64) build generic code.
    _compile(cxx + list(_FLAGS), include, path)
  return path


def _cpu_id() -> str:
  """The machine and CPU model and features, as far as the OS tells them."""
  parts = [platform.machine(), platform.processor()]
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.split(':')[0].strip() in ('model name', 'flags', 'Features', 'CPU part'):
          parts.append(line.strip())
        if line.strip() == '':
          break  # the first processor is enough
  except OSError:  # no /proc (macOS): the platform strings above are what there is
    parts.append('no /proc/cpuinfo')
  return '\n'.join(parts)


def _compile(cmd_prefix: list[str], include: str, path: str) -> None:
  """Compiles the kernel to `path` (atomically) or raises KernelUnavailable."""
  # Compile to a temporary name and rename: concurrent builders (pytest workers) never
  # load a half-written library.
  with atomic.atomic_path(path, suffix='.so') as tmp:
    cmd = cmd_prefix + ['-I', include, _SOURCE, '-o', tmp]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if result.returncode != 0:
      errors = [l for l in result.stderr.splitlines() if 'error' in l] or [result.stderr[-2000:]]
      raise KernelUnavailable(f'compiling {_SOURCE} failed ({shlex.join(cmd)}):\n'
                              + '\n'.join(errors[:10]))


def _load() -> None:
  if os.environ.get('IVID_JAX_CPU_KERNEL', '1') == '0':
    raise KernelUnavailable('turned off by IVID_JAX_CPU_KERNEL=0')
  path = _build()
  lib = ctypes.cdll.LoadLibrary(path)
  jax.ffi.register_ffi_target(RASTERIZE_TARGET, jax.ffi.pycapsule(lib.IvidRasterize),
                              platform='cpu')
  jax.ffi.register_ffi_target(ACCUMULATE_TARGET, jax.ffi.pycapsule(lib.IvidAccumulate),
                              platform='cpu')


def available() -> tuple[bool, str]:
  """(True, library path) once the kernel is built and registered, else (False, why).

  Builds on the first call (a few seconds); later calls return the cached answer.
  """
  with _lock:
    if 'ok' not in _state:
      try:
        _load()
        _state.update(ok=True, why='')
      except KernelUnavailable as e:
        _state.update(ok=False, why=str(e))
    return bool(_state['ok']), str(_state['why'])


def num_threads() -> int:
  """Threads the kernel uses: IVID_JAX_KERNEL_THREADS, else the CPUs available to us."""
  env = os.environ.get('IVID_JAX_KERNEL_THREADS')
  if env:
    return max(1, int(env))
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:
    return max(1, os.cpu_count() or 1)


def resolve(kernel: str) -> str:
  """'jnp' or 'cpu' for `kernel` ('auto': the CPU kernel on the CPU backend where it builds).

  Raises:
    ValueError: an unknown name.
    KernelUnavailable: 'cpu' off the CPU backend or where the kernel does not build.
  """
  if kernel not in KERNELS:
    raise ValueError(f'kernel must be one of {KERNELS}, got {kernel!r}')
  if kernel == 'jnp':
    return 'jnp'
  if kernel == 'cpu':
    if jax.default_backend() != 'cpu':
      raise KernelUnavailable(
          f"kernel='cpu' runs on the CPU backend; JAX's default here is "
          f"{jax.default_backend()!r}: use kernel='jnp' (or 'auto')")
    ok, why = available()
    if not ok:
      raise KernelUnavailable(f"kernel='cpu' asked for, but {why}")
    return 'cpu'
  return 'cpu' if jax.default_backend() == 'cpu' and available()[0] else 'jnp'


def _require() -> None:
  ok, why = available()
  if not ok:
    raise KernelUnavailable(why)


def rasterize(clip: Array, faces: Array, *, height: int, width: int, near: float, far: float,
              cull_back: Array | None = None) -> tuple[Array, Array, Array, Array]:
  """`raster.rasterize` by the kernel (jit-able; CPU only): face, bary, depth, front.

  Args:
    clip: float32 [B, V, 4] clip-space vertices. faces: int32 [B, T, 3].
    height, width: output size in samples. near, far: the projection's clip planes.
    cull_back: optional bool [B, T].

  Returns:
    face int32 [B, H, W] (-1 empty), bary float32 [B, H, W, 3], depth float32 [B, H, W]
    (`far` where empty), front bool [B, H, W]: the fields of `raster.Fragments`.
  """
  _require()
  bsz, num_faces = faces.shape[0], faces.shape[1]
  cull = (jnp.zeros((bsz, num_faces), bool) if cull_back is None
          else jnp.asarray(cull_back, bool).reshape(bsz, num_faces))
  call = jax.ffi.ffi_call(
      RASTERIZE_TARGET,
      (jax.ShapeDtypeStruct((bsz, height, width), jnp.int32),
       jax.ShapeDtypeStruct((bsz, height, width, 3), jnp.float32),
       jax.ShapeDtypeStruct((bsz, height, width), jnp.float32),
       jax.ShapeDtypeStruct((bsz, height, width), jnp.bool_)),
      vmap_method='sequential')
  f32 = np.float32  # the constants rounded to float32, as jnp rounds Python floats it meets
  return call(jnp.asarray(clip, jnp.float32), jnp.asarray(faces, jnp.int32), cull,
              height=np.int64(height), width=np.int64(width), num_threads=np.int64(num_threads()),
              near=f32(near), far=f32(far), inv_near=f32(1.0 / near), inv_far=f32(1.0 / far))


def accumulate(clip: Array, targets: Array, faces: Array, normals: Array, uv: Array,
               flags: Array, textures: Array, source_modelviews: Array, valid: Array, *,
               size: int, fov: float, near: float, far: float
               ) -> tuple[Array, Array, Array, Array]:
  """Grid meshes accumulated into frames, as `render.resolve` reads them (jit-able; CPU only).

  Every valid view is drawn into every frame with its own z-buffer (clip planes
  `near`/`far`), shaded with `render.aggregation_weight` (back-facing padding
  faces culled) and accumulated over views in index order (`render.accumulate`).

  Args:
    clip: float32 [F, V, P, 4] the views' mesh vertices in each frame's clip space.
    targets: float32 [F, 4, 4] the frames' world-to-camera matrices.
    faces: int32 [V, T, 3]. normals: float32 [V, P, 3] world. uv: float32 [V, P, 2].
    flags: float32 [V, P, 3] (edge, padding, eroded).
    textures: float32 [V, N, N, 3] in [0, 1].
    source_modelviews: float32 [V, 4, 4] the views' cameras (the weights' centres).
    valid: bool [V]: views drawn.
    size: frame side in samples. fov: degrees. near, far: the frames' clip planes; the
      depth read where nothing was drawn is `near` (a cleared read-back).

  Returns:
    `render.Accumulated`'s fields, [F, size, size]: color float32 [..., 3], depth float32
    (linear), mask_depth bool, mask_color bool.
  """
  _require()
  num_frames = clip.shape[0]
  centers = cameras.camera_center(jnp.asarray(source_modelviews, jnp.float32))
  call = jax.ffi.ffi_call(
      ACCUMULATE_TARGET,
      (jax.ShapeDtypeStruct((num_frames, size, size, 3), jnp.float32),
       jax.ShapeDtypeStruct((num_frames, size, size), jnp.float32),
       jax.ShapeDtypeStruct((num_frames, size, size), jnp.int32)),
      vmap_method='sequential')
  f32 = np.float32
  color, depth, coverage = call(
      jnp.asarray(clip, jnp.float32), jnp.asarray(targets, jnp.float32),
      jnp.asarray(faces, jnp.int32), jnp.asarray(normals, jnp.float32),
      jnp.asarray(uv, jnp.float32), jnp.asarray(flags, jnp.float32),
      jnp.asarray(textures, jnp.float32), centers, jnp.asarray(valid, jnp.int32),
      size=np.int64(size), num_threads=np.int64(num_threads()), near=f32(near), far=f32(far),
      inv_near=f32(1.0 / near), inv_far=f32(1.0 / far), render_near=f32(near),
      tan_half=f32(math.tan(math.radians(fov) / 2)), two_over_size=f32(2.0 / size))
  return color, depth, (coverage & 1) > 0, (coverage & 2) > 0
