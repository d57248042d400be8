"""Fusion free-view rendering: frames per second of a 27-view scene, ours and the authors'.

  python benchmarks/render.py [--size=128] [--frames=16] [--repeats=3]
      [--authors_src=DIR [--authors_python=PYTHON]]

The scene is a procedural `synthetic_rgbd` scene seen from the authors' 3x9
cameras (27 views, exact depth); the frames are the swing trajectory, rendered
as one batch. Rows: `exact` (the authors' renderer: 5x supersampling, all
views per frame) by the XLA:CPU kernel (`geometry/raster_kernel.py`, CPU backend
only; built or loaded from its cache before the timing) and by the portable
jnp path, `preview` (point splatting), and with --authors_src (a
checkout of JeffreyXiang/ivid) their moderngl AggregationRenderer on the same
meshes and cameras, run in this interpreter if it has moderngl, PyGLM and
easydict, else in --authors_python (e.g. a venv with `pip install moderngl
pyglm easydict`); on a machine without a GPU moderngl uses Mesa's software
OpenGL (llvmpipe) through EGL. '-' when it cannot run. All rows are measured
in the same run; the header gives the load of the machine, since other
processes share its cores.
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

from ivid_jax.data import synthetic_rgbd
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import render
from ivid_jax.geometry import raster_kernel
from ivid_jax.rendering import fusion
from ivid_jax.rendering import trajectories

_SIZE = flags.DEFINE_integer('size', 128, 'View resolution.')
_FRAMES = flags.DEFINE_integer('frames', 16, 'Frames per batch (the swing trajectory).')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls per row (median).')
_AUTHORS_SRC = flags.DEFINE_string('authors_src', None, "A checkout of the authors' repository.")
_AUTHORS_PYTHON = flags.DEFINE_string('authors_python', None, 'An interpreter with moderngl, '
                                      'PyGLM and easydict, if this one lacks them.')


def _scene(size):
  """27 views of one synthetic scene: views [27, S, S, 4] (z: near 0.5 / far 100), modelviews."""
  cfg = synthetic_rgbd.SyntheticRgbdConfig(name=f'r{size}', resolution=size, num_train=1,
                                           num_test=1, batch_size=1)
  data = synthetic_rgbd.generate(cfg, 'test', 3, 1)
  views = np.concatenate([data['rgb'][0, :27] / 255.0, data['depth'][0, :27]], -1)
  return views.astype(np.float32), data['modelview'][0, :27]


def _median(fn, repeats):
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _authors_fps(views, modelviews, targets, size, repeats):
  if not _AUTHORS_SRC.value:
    return None, 'no --authors_src'
  meshes = render.view_meshes(jnp.asarray(views), jnp.asarray(modelviews),
                              near=depth_lib.TRAIN_NEAR, far=depth_lib.TRAIN_FAR,
                              padding=fusion.FUSION_PADDING)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'meshes.npz')
    np.savez(path, position=np.asarray(meshes.positions), normal=np.asarray(meshes.normals),
             uv=np.asarray(meshes.uv), faces=np.asarray(meshes.faces).astype(np.uint32),
             flag=np.asarray(meshes.flags) @ np.array([1.0, 2.0, 4.0], np.float32),
             color=np.ascontiguousarray(views[..., :3]), modelview=modelviews,
             targets=np.asarray(targets), size=size)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_authors_render.py')
    python = _AUTHORS_PYTHON.value or sys.executable
    result = subprocess.run([python, script, _AUTHORS_SRC.value, path, str(repeats)],
                            capture_output=True, text=True, check=False)
  if result.returncode != 0:
    return None, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'failed'
  return float(result.stdout.strip().splitlines()[-1]), 'moderngl (their renderer)'


def main(argv):
  del argv
  size, nframes = _SIZE.value, _FRAMES.value
  device = jax.devices()[0]
  load = ' / '.join(f'{x:.1f}' for x in os.getloadavg())
  print(f'# {device.platform.upper()} {device.device_kind}, {jax.device_count()} device(s), '
        f'{os.cpu_count()} cores, {platform.processor() or platform.machine()}, jax '
        f'{jax.__version__}, load average {load}')
  views, modelviews = _scene(size)
  targets = trajectories.modelviews(*trajectories.swing(nframes))
  rows = []
  for mode, kernel, name in (('exact', 'cpu', 'ours, exact (CPU kernel)'),
                             ('exact', 'jnp', 'ours, exact (jnp)'),
                             ('preview', 'jnp', 'ours, preview')):
    if kernel == 'cpu':
      try:
        fusion.resolve_kernel('cpu')  # builds it (or loads it from the cache) before timing
      except raster_kernel.KernelUnavailable as e:
        rows.append((f'{name}: {e}'.replace('\n', ' '), None, None))
        continue
    fn = lambda mode=mode, kernel=kernel: jax.block_until_ready(fusion.render_scene(
        views, modelviews, targets, mode=mode, near=depth_lib.TRAIN_NEAR,
        far=depth_lib.TRAIN_FAR, kernel=kernel))
    start = time.perf_counter()
    fn()
    compile_s = time.perf_counter() - start
    seconds = _median(fn, _REPEATS.value)
    rows.append((name, compile_s, nframes / seconds))
  authors, note = _authors_fps(views, modelviews, targets, size, _REPEATS.value)
  print(f'| renderer ({len(views)} views, {size} px, batch {nframes}) | first call s | '
        'frames / s | vs authors |')
  print('|---|---:|---:|---:|')
  for name, compile_s, fps in rows:
    if fps is None:
      print(f'| {name} | - | - | - |')
      continue
    ratio = f'{fps / authors:.2f}x' if authors else '-'
    print(f'| {name} | {compile_s:.1f} | {fps:.2f} | {ratio} |')
  print(f'| authors, {note} | - | {authors:.2f} | 1.00x |' if authors else
        f'| authors ({note}) | - | - | - |')


if __name__ == '__main__':
  app.run(main)
