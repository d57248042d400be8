"""Forward-backward warps per second: 128x128 RGBD, ssaa 3, training padding, ours beside the authors'.

  python benchmarks/warp.py [--batch_sizes=1,16,64] [--repeats=5] [--kernels=cpu,jnp]
      [--authors_src=DIR [--authors_python=PYTHON]]

Times `geometry.warp.forward_backward_warp` (the conditional model's training
pairs; the defaults are the authors' training settings: padding = image size,
ssaa 3, tolerances 0.02) on the bundled images and random training cameras, per
rasteriser path: `cpu` (the rasteriser's XLA:CPU kernel, the default on CPUs)
and `jnp` (the portable path accelerators run). Median of --repeats timed calls
after a compile call. With --authors_src (a checkout of JeffreyXiang/ivid) the
authors' own `forward_backward_warp` (moderngl SimpleRenderer, Mesa's software
OpenGL on a machine without a GPU) warps the same images from the same cameras
in the same run, one image at a time as their data loader does, in
--authors_python if this interpreter lacks their imports; the last column is
ours / theirs per image. FLOPs and bytes are XLA's cost analysis of the
compiled one-image warp (the kernel's own work is not counted by XLA: its rows
say so).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from ivid_jax.data import assets
from ivid_jax.geometry import cameras
from ivid_jax.geometry import raster_kernel
from ivid_jax.geometry import warp

_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['1', '16', '64'], 'Batch sizes to time.')
_KERNELS = flags.DEFINE_list('kernels', ['cpu', 'jnp'], "Rasteriser paths: 'cpu', 'jnp'.")
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per batch size.')
_AUTHORS_SRC = flags.DEFINE_string('authors_src', None, "A checkout of the authors' repository.")
_AUTHORS_PYTHON = flags.DEFINE_string('authors_python', None, "An interpreter with the authors' "
                                      'imports (torch, moderngl, PyGLM, easydict, OpenCV, plyfile), '
                                      'if this one lacks them.')
_AUTHORS_IMAGES = 16  # images per authors' pass (they warp one at a time)


def _inputs(bsz, rgbd):
  images = jnp.asarray(rgbd[np.arange(bsz) % len(rgbd)])
  return images, cameras.random_training_camera(jax.random.key(bsz), (bsz,))


def _authors_ms(rgbd):
  if not _AUTHORS_SRC.value:
    return None, 'no --authors_src'
  images, mv1 = _inputs(_AUTHORS_IMAGES, rgbd)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'inputs.npz')
    np.savez(path, rgbd=np.asarray(images), modelview1=np.asarray(mv1))
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_authors_warp.py')
    result = subprocess.run([_AUTHORS_PYTHON.value or sys.executable, script, _AUTHORS_SRC.value,
                             path, str(_REPEATS.value)], capture_output=True, text=True,
                            check=False)
  if result.returncode != 0:
    return None, (result.stderr.strip().splitlines() or ['failed'])[-1]
  return float(result.stdout.strip().splitlines()[-1]), 'moderngl SimpleRenderer'


def _cost(fn, *args):
  """(GFLOP, MB accessed) per call from XLA's cost analysis of the compiled program."""
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return cost.get('flops', float('nan')) / 1e9, cost.get('bytes accessed', float('nan')) / 1e6


def main(argv):
  del argv
  rgbd = assets.load_rgbd_npz('demo_rgbd.npz')
  device = jax.devices()[0]
  load = ' / '.join(f'{x:.1f}' for x in os.getloadavg())
  print(f'# {device.platform.upper()} {device.device_kind}, {jax.device_count()} device(s), '
        f'{os.cpu_count()} cores, {platform.processor() or platform.machine()}, jax '
        f'{jax.__version__}, load average {load}')
  authors, note = _authors_ms(rgbd)
  print(f'| path | batch | compile s | ms / batch | ms / image | warps / s | GFLOP / image '
        f'(XLA) | MB / image (XLA) | ours / authors ({note}) |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for kernel in _KERNELS.value:
    try:
      kernel = raster_kernel.resolve(kernel)
    except raster_kernel.KernelUnavailable as e:
      print(f'| {kernel}: {e} | - | - | - | - | - | - | - | - |'.replace('\n', ' '))
      continue
    for bsz in map(int, _BATCH_SIZES.value):
      images, mv1 = _inputs(bsz, rgbd)
      call = lambda im, mv, kernel=kernel: warp.forward_backward_warp(im, mv, kernel=kernel)
      fn = lambda: jax.block_until_ready(call(images, mv1))
      start = time.perf_counter()
      fn()
      compile_s = time.perf_counter() - start
      times = []
      for _ in range(_REPEATS.value):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
      ms = 1e3 * float(np.median(times))
      gflop, mbytes = _cost(call, images[:1], mv1[:1])
      kernel_note = ' + kernel' if kernel == 'cpu' else ''
      ratio = f'{ms / bsz / authors:.2f}x' if authors else '-'
      print(f'| {kernel} | {bsz} | {compile_s:.1f} | {ms:.1f} | {ms / bsz:.1f} | '
            f'{1e3 * bsz / ms:.1f} | {gflop:.3f}{kernel_note} | {mbytes:.1f}'
            f'{kernel_note} | {ratio} |', flush=True)
  if authors:
    print(f'| authors ({note}) | 1 | - | - | {authors:.1f} | {1e3 / authors:.1f} | - | - | 1.00x |')


if __name__ == '__main__':
  app.run(main)
