"""Forward-backward warps per second: 128x128 RGBD, ssaa 3, training padding.

  python benchmarks/warp.py [--batch_sizes=1,16,64] [--repeats=5]

Prints one table (median of `repeats` timed calls after a compile call). The
authors' OpenGL warp (moderngl on software GL, on the 2-core CPU of the
development machines) takes about 40 ms per image.
"""

from __future__ import annotations

import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from ivid_jax.data import assets
from ivid_jax.geometry import cameras
from ivid_jax.geometry import warp

_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['1', '16', '64'], 'Batch sizes to time.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per batch size.')
_AUTHORS_MS = 40.0


def main(argv):
  del argv
  rgbd = assets.load_rgbd_npz('demo_rgbd.npz')
  device = jax.devices()[0]
  print(f'# {device.platform.upper()} {device.device_kind}, {jax.device_count()} device(s), '
        f'{platform.processor() or platform.machine()}, jax {jax.__version__}')
  print('| batch | compile s | ms / batch | ms / image | warps / s | vs authors (40 ms) |')
  print('|---:|---:|---:|---:|---:|---:|')
  for bsz in map(int, _BATCH_SIZES.value):
    images = jnp.asarray(rgbd[np.arange(bsz) % len(rgbd)])
    mv1 = cameras.random_training_camera(jax.random.key(bsz), (bsz,))
    fn = lambda: jax.block_until_ready(warp.forward_backward_warp(images, mv1, padding=128))
    start = time.perf_counter()
    fn()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(_REPEATS.value):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
    ms = 1e3 * float(np.median(times))
    print(f'| {bsz} | {compile_s:.1f} | {ms:.1f} | {ms / bsz:.1f} | {1e3 * bsz / ms:.1f} | '
          f'{_AUTHORS_MS / (ms / bsz):.1f}x |')


if __name__ == '__main__':
  app.run(main)
