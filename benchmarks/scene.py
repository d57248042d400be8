"""One 3x9 scene as whole processes: `ivid-jax sample` beside the authors' `sample_all`.

  python benchmarks/scene.py --authors_src=DIR [--authors_python=PYTHON]
      [--rows=ddim5,ddim50] [--workdir=outputs/bench_scene] [--authors_threads=N]
      [--nocold] [--nocost_analysis]

The networks: two small `AdmUnet2d` of the authors at 128 px (64 channels,
mult 1,1,2,2, one res block, attention at 16 px, 10 classes and a null class;
6.1M parameters each), G_u with 4 input channels, G_c with 10, seeded random
weights, and every layer their `zero_module` zeroes given small seeded random
values so the outputs are not trivial. benchmarks/_authors_scene.py builds them
in --authors_python (torch and the authors' checkout) and they are converted
with `ivid-jax convert-checkpoint`. Without --authors_src there is no
AdmUnet2d to build: our UNet of the same configuration is initialised by Flax
instead (same shapes, other numbers), written as model files, and only our
columns are filled.

Rows: ddimS is one 3x9 scene (seed 0, class 3, guidance 3, batch 1, the
authors' x_0 edits and aggregation constants) with S DDIM steps for view 0 and
for every further view. Per row, every figure is the wall time of a whole
process (start-up, compilation, sampling and writing the scene):
  ours cold   `ivid-jax sample ...` with empty caches (the workdir's
              JAX_COMPILATION_CACHE_DIR and IVID_JAX_CACHE_DIR, emptied at the
              start: it compiles every program and builds the rasteriser's kernel).
  ours warm   the same command again: what every later run of it costs (JAX's
              persistent compilation cache holds its programs). The row's figure.
  authors     `_authors_scene.py sample`: their inference/sample.py imported
              unchanged (CUDA calls made the CPU's), `sample_all` with
              ClassifierFreeGuidance / InpaintCFG around the same weights, their
              moderngl AggregationRenderer (Mesa llvmpipe through EGL on a
              machine without a GPU), their `save_scene`.
Our runs go through a two-line wrapper of the `ivid-jax` entry point that
timestamps each finished view (chain.report).
Targets: warm / authors <= 0.7 at DDIM 5, <= 0.85 at DDIM 50.

Below the table: our per-view times (the warm run's timestamps), the
condition's share of view 26 (the aggregation of views 0-25 into camera 26,
timed in this process on the scene the warm run wrote, against view 26's
time; target <= 10% at DDIM 5), and XLA's cost analysis of the chain's parts
(one guided forward of each network at batch 1 and one condition; XLA counts
a loop body once and not the rasteriser kernel's own work, so the chain's
total is assembled from its parts: S G_u forwards + 26 x (S G_c forwards + 1
condition)). The header gives the machine's load before and after: other
processes share its cores, and the rows run one after another.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HERE = os.path.dirname(os.path.abspath(__file__))

_AUTHORS_SRC = flags.DEFINE_string('authors_src', None, "A checkout of the authors' repository "
                                   '(JeffreyXiang/ivid); without it only our columns are filled.')
_AUTHORS_PYTHON = flags.DEFINE_string(
    'authors_python', None, "An interpreter with the authors' sampling dependencies (torch, "
    'numpy, moderngl, PyGLM, easydict, tqdm, imageio, opencv-python-headless, plyfile, '
    'pillow); default: this one.')
_AUTHORS_THREADS = flags.DEFINE_integer(
    'authors_threads', 0, "torch's threads in the authors' process (OMP_NUM_THREADS); 0: "
    "torch's default (the cores). On a loaded machine their 2-thread OpenMP forward waits on "
    'descheduled threads (measured 2-10x slower than 1 thread at load 4-6 on 2 cores).',
    lower_bound=0)
_ROWS = flags.DEFINE_list('rows', ['ddim5', 'ddim50'], 'Rows: ddimS = S DDIM steps for view 0 '
                          'and for every further view.')
_WORKDIR = flags.DEFINE_string('workdir', os.path.join(_REPO, 'outputs', 'bench_scene'),
                               'Weights, model files, compilation caches, outputs and logs.')
_COLD = flags.DEFINE_bool('cold', True, 'Run ours once more before the timed (warm) run, with '
                          'the compilation cache emptied first.')
_COST = flags.DEFINE_bool('cost_analysis', True, "XLA's cost analysis of the chain's parts and "
                          "the condition's share at view 26 (compiles in this process).")

TARGETS = {5: 0.7, 50: 0.85}  # warm / authors
SEED, CLASS, GUIDANCE, NUM_VIEWS = 0, 3, 3.0, 27
# The single-quoted program our cold run goes through: the CLI, with the chain's progress
# report (chain.report, which the sampler calls after each view) timestamped.
_WRAPPER = '''
import atexit, json, sys, time
from ivid_jax.sampling import chain
stamps, report = [], chain.report
def timed(view):
  stamps.append((int(view), time.perf_counter()))
  report(view)
chain.report = timed
atexit.register(lambda: open(sys.argv[1], 'w').write(json.dumps(stamps)))
from ivid_jax import main
main.run(['ivid-jax'] + sys.argv[2:])
'''


def _load() -> str:
  return ' / '.join(f'{x:.1f}' for x in os.getloadavg())


def _steps(row: str) -> int:
  m = re.fullmatch(r'ddim(\d+)', row)
  if not m or not 0 < int(m[1]) < 1000:
    raise app.UsageError(f'--rows: {row!r} is not ddimS with 0 < S < 1000')
  return int(m[1])


def _run(cmd, log, env=None) -> float:
  """Wall seconds of one process; its output goes to `log`; raises naming the log on failure."""
  start = time.perf_counter()
  with open(log, 'w') as f:
    result = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False,
                            cwd=_REPO)
  seconds = time.perf_counter() - start
  if result.returncode != 0:
    with open(log) as f:
      tail = f.read().strip().splitlines()[-8:]
    raise RuntimeError(f'{cmd[0]} ... exited {result.returncode} (log: {log}):\n  ' +
                       '\n  '.join(tail))
  return seconds


def _ivid_jax() -> str:
  here = os.path.join(os.path.dirname(sys.executable), 'ivid-jax')
  found = here if os.path.exists(here) else shutil.which('ivid-jax')
  if not found:
    raise app.UsageError('no ivid-jax command beside this interpreter or on PATH '
                         '(pip install -e . in this repository)')
  return found


def _our_weights(out_dir: str) -> None:
  """Without the authors' code: our UNet of the same configuration, Flax-initialised."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  from ivid_jax.models import model_file  # pylint: disable=g-import-not-at-top
  from ivid_jax.models import unet as unet_lib  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, _HERE)
  import _authors_scene  # pylint: disable=g-import-not-at-top
  for seed, (name, cfg) in enumerate(_authors_scene.CONFIGS.items()):
    model = unet_lib.from_backbone_args(cfg['backbone']['args'])
    x = np.zeros((1, model.image_size, model.image_size, model.in_channels), np.float32)
    params = model.init(jax.random.key(seed), x, np.zeros((1,), np.int32),
                        np.zeros((1,), np.int32))['params']
    flat = traverse_util.flatten_dict(jax.tree.map(np.asarray, params), sep='/')
    rng = np.random.default_rng(1000 + seed)
    for path, value in flat.items():  # the layers the authors' zero_module zeroes
      if re.search(r'(^|/)(out_conv|proj_out|out_2)/', path):
        flat[path] = (rng.standard_normal(value.shape) * _authors_scene.ZERO_STD).astype(
            np.float32)
    fields = {k: getattr(model, k) for k in model_file.unet_field_names()}
    model_file.save(os.path.join(out_dir, f'{name}.msgpack'), unet=fields,
                    params=traverse_util.unflatten_dict(flat, sep='/'),
                    source='benchmarks/scene.py (Flax init, no authors checkout)')


def _prepare(work: str, authors_python: str | None) -> dict:
  """Weights and model files in work/weights, work/models; returns what make-weights said."""
  weights, models = os.path.join(work, 'weights'), os.path.join(work, 'models')
  for d in (weights, models):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
  info = {}
  if _AUTHORS_SRC.value:
    log = os.path.join(work, 'logs', 'make_weights.log')
    _run([authors_python, os.path.join(_HERE, '_authors_scene.py'), 'make-weights',
          _AUTHORS_SRC.value, weights], log)
    with open(log) as f:
      for line in f:
        if line.startswith('{'):
          d = json.loads(line)
          info[d['network']] = d
    for name in ('uncond', 'cond'):
      _run([_ivid_jax(), 'convert-checkpoint', os.path.join(weights, f'{name}.npz'),
            os.path.join(models, f'{name}.msgpack'),
            f'--backbone={os.path.join(weights, f"{name}.json")}'],
           os.path.join(work, 'logs', f'convert_{name}.log'))
  else:
    _our_weights(models)
  return info


def _our_env(work: str) -> dict:
  env = dict(os.environ)
  env['JAX_COMPILATION_CACHE_DIR'] = os.path.join(work, 'cache', 'jax')
  env['IVID_JAX_CACHE_DIR'] = os.path.join(work, 'cache', 'ivid_jax')
  return env


def _sample_args(work: str, steps: int, out: str) -> list[str]:
  models = os.path.join(work, 'models')
  return ['sample', f'--uncond={models}/uncond.msgpack', f'--cond={models}/cond.msgpack',
          '--viewset=3x9', f'--seeds={SEED}', f'--classes={CLASS}', f'--steps_uncond={steps}',
          f'--steps_cond={steps}', f'--guidance={GUIDANCE:g}', '--batch_size=1', f'--out={out}']


def _per_view(stamps_path: str) -> list[float] | None:
  """Seconds of views 1..V-1 from the progress timestamps (first report of each view)."""
  try:
    with open(stamps_path) as f:
      stamps = json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    return None
  first = {}
  for view, t in stamps:
    first.setdefault(view, t)
  if sorted(first) != list(range(NUM_VIEWS)):
    return None
  return [first[j] - first[j - 1] for j in range(1, NUM_VIEWS)]


def _row(work: str, steps: int, authors_python: str | None) -> dict:
  run = os.path.join(work, 'runs', f'ddim{steps}')
  shutil.rmtree(run, ignore_errors=True)
  os.makedirs(run)
  env = _our_env(work)
  r = {'steps': steps, 'out': os.path.join(run, 'ours_warm')}
  if _COLD.value:
    r['cold'] = _run([sys.executable, '-c', _WRAPPER, os.path.join(run, 'ours_cold_views.json')]
                     + _sample_args(work, steps, os.path.join(run, 'ours_cold')),
                     os.path.join(run, 'ours_cold.log'), env)
  stamps = os.path.join(run, 'ours_warm_views.json')
  r['warm'] = _run([sys.executable, '-c', _WRAPPER, stamps] + _sample_args(work, steps, r['out']),
                   os.path.join(run, 'ours_warm.log'), env)
  r['views'] = _per_view(stamps)
  if _AUTHORS_SRC.value:
    log = os.path.join(run, 'authors.log')
    env = dict(os.environ)
    if _AUTHORS_THREADS.value:
      env['OMP_NUM_THREADS'] = str(_AUTHORS_THREADS.value)
    r['authors'] = _run([authors_python, os.path.join(_HERE, '_authors_scene.py'), 'sample',
                         _AUTHORS_SRC.value, os.path.join(work, 'weights'), str(steps), str(steps),
                         os.path.join(run, 'authors')], log, env)
    with open(log) as f:
      lines = [l for l in f.read().splitlines() if l.startswith('{')]
    r['authors_info'] = json.loads(lines[-1]) if lines else {}
  return r


def _cost(compiled) -> tuple[float, float]:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  cost = cost or {}
  return float(cost.get('flops', float('nan'))), float(cost.get('bytes accessed', float('nan')))


def _median_seconds(fn, repeats=3) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _condition_fns(settings):
  """(mesh_fn, from_meshes_fn) of one scene: what the chain does per view for its condition."""
  from ivid_jax.geometry import raster_kernel  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import aggregate  # pylint: disable=g-import-not-at-top
  geometry = dict(fov=settings.fov, near=settings.near, far=settings.far, atol=settings.atol,
                  rtol=settings.rtol, erode_rgb=settings.erode_rgb)
  mesh_fn = lambda views, mvs: aggregate.condition_meshes(views, mvs, **geometry)
  kernel = raster_kernel.resolve(settings.kernel)
  from_meshes_fn = lambda meshes, views, mvs, valid, target: aggregate.condition_from_meshes(
      meshes, views[..., :3], mvs, valid, target, ssaa=settings.ssaa, kernel=kernel, **geometry)
  return mesh_fn, from_meshes_fn


def _smooth_condition_s(mesh_fn, from_meshes_fn, settings) -> float:
  """The same condition (views 0-25 into camera 26) on a ground-truth scene: smooth depth.

  A procedural synthetic_rgbd scene at 128 px seen from the authors' 3x9 cameras (the scene
  benchmarks/render.py draws), its depth re-encoded with the sampler's near/far.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from ivid_jax.data import synthetic_rgbd  # pylint: disable=g-import-not-at-top
  from ivid_jax.geometry import depth as depth_lib  # pylint: disable=g-import-not-at-top
  cfg = synthetic_rgbd.SyntheticRgbdConfig(name='r128', resolution=128, num_train=1,
                                           num_test=1, batch_size=1)
  data = synthetic_rgbd.generate(cfg, 'test', 3, 1)
  d = depth_lib.linearize_depth(jnp.asarray(data['depth'][0, :NUM_VIEWS, ..., 0]),
                                depth_lib.TRAIN_NEAR, depth_lib.TRAIN_FAR)
  z = depth_lib.project_depth(d, settings.near, settings.far)
  views = jnp.concatenate([jnp.asarray(data['rgb'][0, :NUM_VIEWS] / 255.0, jnp.float32),
                           z[..., None]], -1)
  mvs = jnp.asarray(data['modelview'][0, :NUM_VIEWS], jnp.float32)
  valid = jnp.arange(NUM_VIEWS) < NUM_VIEWS - 1
  meshes = jax.block_until_ready(jax.jit(mesh_fn)(views, mvs))
  raster = jax.jit(from_meshes_fn).lower(meshes, views, mvs, valid, mvs[-1]).compile()
  return _median_seconds(lambda: raster(meshes, views, mvs, valid, mvs[-1]))


def _analyse(work: str, out: str) -> dict:
  """The condition at view 26 (seconds) and the cost analysis of one step of each part."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import chain  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import sampler  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import scene_io  # pylint: disable=g-import-not-at-top
  with open(os.path.join(out, 'run.json')) as f:
    settings = chain.Settings(**json.load(f)['settings'])
  scene = scene_io.read_scene(
      os.path.join(out, 'scenes', f'scene_{scene_io.suffix(SEED, CLASS)}.npz'))
  views = jnp.asarray(scene.views)
  mvs = jnp.asarray(scene.modelviews)
  valid = jnp.arange(NUM_VIEWS) < NUM_VIEWS - 1
  target = mvs[NUM_VIEWS - 1]
  mesh_fn, from_meshes_fn = _condition_fns(settings)
  res = {}
  meshes = jax.block_until_ready(jax.jit(mesh_fn)(views, mvs))
  one = jax.jit(mesh_fn).lower(views[:1], mvs[:1]).compile()
  res['mesh_s'] = _median_seconds(lambda: one(views[:1], mvs[:1]))
  raster = jax.jit(from_meshes_fn).lower(meshes, views, mvs, valid, target).compile()
  res['raster_s'] = _median_seconds(lambda: raster(meshes, views, mvs, valid, target))
  res['condition_s'] = res['mesh_s'] + res['raster_s']
  fl = [_cost(one), _cost(raster)]
  res['condition'] = (fl[0][0] + fl[1][0], fl[0][1] + fl[1][1])
  res['smooth_condition_s'] = _smooth_condition_s(mesh_fn, from_meshes_fn, settings)
  models = os.path.join(work, 'models')
  nets = sampler.load_networks(os.path.join(models, 'uncond.msgpack'),
                               os.path.join(models, 'cond.msgpack'), guidance=GUIDANCE)
  n = nets.image_size
  key, t = jax.random.key(0), jnp.full((1,), 999, jnp.int32)
  x = jnp.zeros((1, n, n, 4), jnp.float32)
  classes = jnp.full((1,), CLASS, jnp.int32)
  aux_u = {'params': nets.uncond.params, 'classes': classes}
  aux_c = {'params': nets.cond.params, 'classes': classes, 'y': x,
           'mask': jnp.zeros((1, n, n, 1)), 'mask_rgb': jnp.zeros((1, n, n, 1)),
           'view': jnp.int32(NUM_VIEWS - 1)}
  res['uncond'] = _cost(jax.jit(nets.uncond.eps_fn).lower(aux_u, key, x, t).compile())
  res['cond'] = _cost(jax.jit(nets.cond.eps_fn).lower(aux_c, key, x, t).compile())
  return res


def _fmt(seconds):
  return '-' if seconds is None else f'{seconds:.1f}'


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  steps = [_steps(r) for r in _ROWS.value]
  work = os.path.abspath(_WORKDIR.value)
  authors_python = _AUTHORS_PYTHON.value or sys.executable
  if _AUTHORS_SRC.value and not os.path.isfile(
      os.path.join(_AUTHORS_SRC.value, 'inference', 'sample.py')):
    raise app.UsageError(f'--authors_src={_AUTHORS_SRC.value}: no inference/sample.py there')
  os.makedirs(os.path.join(work, 'logs'), exist_ok=True)
  shutil.rmtree(os.path.join(work, 'cache'), ignore_errors=True)
  torch = '-'
  if _AUTHORS_SRC.value:
    torch = subprocess.run([authors_python, '-c', 'import torch; print(torch.__version__)'],
                           capture_output=True, text=True, check=False).stdout.strip() or '-'
  load_before = _load()
  info = _prepare(work, authors_python)
  rows = [_row(work, s, authors_python) for s in steps]
  analysis = _analyse(work, rows[0]['out']) if _COST.value else None
  with open(os.path.join(work, 'results.json'), 'w') as f:
    json.dump({'rows': rows, 'analysis': analysis, 'networks': info}, f, indent=1)
  device = jax.devices()[0]
  print(f'# {device.platform.upper()} {device.device_kind}, {os.cpu_count()} cores, '
        f'{platform.processor() or platform.machine()}, jax {jax.__version__}, authors: torch '
        f'{torch}, load average {load_before} before, {_load()} after')
  if info:
    params = ', '.join(f'{k} {v["parameters"] / 1e6:.2f}M' for k, v in info.items())
    print(f'# networks: their AdmUnet2d, 64 ch, mult 1,1,2,2, 1 res block, attention at 16 px, '
          f'10 classes + null ({params}); one 3x9 scene, seed {SEED}, class {CLASS}, guidance '
          f'{GUIDANCE:g}, batch 1')
  else:
    print('# networks: our UNet of that configuration, Flax-initialised (no --authors_src)')
  print('| row | ours cold s | ours warm s | authors s | warm / authors | target |')
  print('|---|---:|---:|---:|---:|---:|')
  for r in rows:
    ratio = f'{r["warm"] / r["authors"]:.2f}x' if r.get('authors') else '-'
    target = f'<= {TARGETS[r["steps"]]}x' if r['steps'] in TARGETS else '-'
    print(f'| DDIM {r["steps"]} (view 0 and every further view) | {_fmt(r.get("cold"))} | '
          f'{_fmt(r["warm"])} | {_fmt(r.get("authors"))} | {ratio} | {target} |')
  print()
  for r in rows:
    v = r.get('views')
    if v:
      print(f'ours, DDIM {r["steps"]}, per view (s): view 1 {v[0]:.2f}, view 13 {v[12]:.2f}, '
            f'view 26 {v[-1]:.2f}, views 1-26 {sum(v):.1f} in all')
    a = r.get('authors_info')
    if a:
      print(f'authors, DDIM {r["steps"]}: sample_all {a["sample_all_s"]:.1f} s of the script\'s '
            f'{a["script_s"]:.1f} s (torch threads: {a["threads"]})')
  if analysis:
    first = rows[0]
    v26 = first['views'][-1] if first.get('views') else None
    share = (f'{analysis["condition_s"] / v26:.0%} of view 26\'s {v26:.2f} s'
             if v26 else 'view 26 not timed')
    target = ' (target <= 10%)' if first['steps'] == 5 else ''
    parts = (f' (rasterising the 26 kept meshes {analysis["raster_s"]:.2f} s + meshing one '
             f'view {analysis["mesh_s"]:.2f} s)' if 'mesh_s' in analysis else '')
    print(f'condition at view 26 (views 0-25 into camera 26, timed in this process): '
          f'{analysis["condition_s"]:.2f} s{parts} = {share}{target}')
    print(f'the same condition on a ground-truth synthetic_rgbd scene (smooth depth, the 3x9 '
          f'cameras): {analysis["smooth_condition_s"]:.2f} s')
    s = first['steps']
    parts = (('G_u guided forward (batch 1, 2 passes)', analysis['uncond'], s),
             ('G_c guided forward (batch 1, 2 passes)', analysis['cond'], s * (NUM_VIEWS - 1)),
             ('condition (view 26: meshing one view + rasterising)', analysis['condition'],
              NUM_VIEWS - 1))
    print(f'\n| XLA cost analysis, DDIM {s} | GFLOP | GB accessed | times per scene |')
    print('|---|---:|---:|---:|')
    total_f = total_b = 0.0
    for name, (fl, by), count in parts:
      print(f'| {name} | {fl / 1e9:.2f} | {by / 1e9:.3f} | {count} |')
      total_f += fl * count
      total_b += by * count
    print(f'| scene | {total_f / 1e9:.1f} | {total_b / 1e9:.2f} | 1 |')
    if first.get('views'):
      later = total_f - analysis['uncond'][0] * s  # views 1-26
      print(f'\nours, views 1-26: {later / 1e9:.1f} GFLOP in {sum(first["views"]):.1f} s = '
            f'{later / 1e9 / sum(first["views"]):.1f} GFLOP/s')


if __name__ == '__main__':
  app.run(main)
