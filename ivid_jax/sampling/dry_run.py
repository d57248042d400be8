"""`ivid-jax sample --dry_run`: the view chain's memory per device, FLOPs and scenes per hour.

The networks are built from their configs (or model files) as abstract
shapes: no weights are needed or allocated. Three programs are compiled for
the devices at hand (or `--dry_run_devices=N` simulated ones):

- the sampler's own jitted chain (`sampler._compiled_chain`: view 0, then a
  scan over the further views, each scene on one device), whose memory
  analysis is the per-device memory of a run;
- one guided denoising step of each network (`guidance.make_eps_fn`, a forward
  pass of 2B for classifier-free guidance) at the per-device batch, whose
  FLOPs and bytes accessed, times the chain's step counts, give the cost of a
  scene: steps_uncond x G_u + (views - 1) x steps_cond x G_c. XLA's cost
  analysis counts a loop body once, so the whole chain's own count would
  miss the steps; this count leaves out the conditions' aggregation
  (rasterising the earlier views), which has no matmul or convolution.

The chain is compiled with the rasteriser accelerators run (`kernel='jnp'`)
and each device rasterising its scenes together (`group`), as on a TPU or GPU.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from ivid_jax import accelerators
from ivid_jax import hlo_stats
from ivid_jax.diffusion import guidance as guidance_lib
from ivid_jax.diffusion import schedules
from ivid_jax.models import model_file
from ivid_jax.sampling import chain as chain_lib
from ivid_jax.sampling import sampler
from ivid_jax.sampling import viewsets
from ivid_jax.training import checkpoint

# The fraction of peak FLOP/s the scenes-per-hour estimate assumes (the plan's, too).
UTILISATION = 0.4
# The authors' speed on a V100 (their paper): about 20 s for view 0 (DDPM 1000) and about
# 1 s for every further view (DDIM 50).
AUTHORS_V100_SECONDS = {'view0': 20.0, 'further_view': 1.0}


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
  """What the dry run needs of a network: its UNet, noise schedule and default step count."""
  source: str
  model: Any
  schedule_name: str
  num_steps: int
  sample_steps: int


def load_config(path: str) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file 'path[:arg]' (as --config takes it)."""
  file, _, arg = path.partition(':')
  if not os.path.isfile(file):
    raise FileNotFoundError(f'{file}: no such config file')
  spec = importlib.util.spec_from_file_location(f'_ivid_dry_run_{abs(hash(file))}', file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


def network_spec(path: str) -> NetworkSpec:
  """A network from a config file (.py[:arg]) or a model file (its weights are not used)."""
  if path.partition(':')[0].endswith('.py'):
    config = load_config(path)
    return NetworkSpec(path, checkpoint.make_model(config), config.diffusion.schedule,
                       int(config.diffusion.num_steps), int(config.diffusion.steps))
  mf = model_file.load(path)
  steps = int(mf.diffusion['num_steps'])
  return NetworkSpec(path, mf.model, mf.diffusion['schedule'], steps,
                     steps if mf.kind == 'uncond' else 50)


@dataclasses.dataclass(frozen=True)
class Report:
  """A dry run of the chain; figures per device unless named per scene."""
  uncond: str
  cond: str
  uncond_params: int
  cond_params: int
  image_size: int
  compute_dtype: str
  platform: str
  device_kind: str
  num_devices: int
  batch_size: int
  scenes_per_device: int
  viewset: str
  num_views: int
  steps_uncond: int
  steps_cond: int
  compile_seconds: float
  chain: hlo_stats.CompiledStats
  uncond_step: hlo_stats.CompiledStats
  cond_step: hlo_stats.CompiledStats
  flops_per_scene: float
  bytes_per_scene: float

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    for k in ('chain', 'uncond_step', 'cond_step'):
      d[k] = getattr(self, k).to_json()
    return d


def _count(params: Any) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))


def _abstract(tree: Any, sharding: Any = None) -> Any:
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def _guided_step(model, params: Any, batch: int, inpaint: bool, guidance: float):
  """One guided eps evaluation at `batch`, compiled on one device."""
  eps_fn = guidance_lib.make_eps_fn(model, guidance, inpaint=inpaint)
  n = model.image_size
  x = jax.ShapeDtypeStruct((batch, n, n, 4), jnp.float32)
  t = jax.ShapeDtypeStruct((batch,), jnp.int32)
  mask = jax.ShapeDtypeStruct((batch, n, n, 1), jnp.float32)

  def one(p, x_t, tt, classes, y, m, m_rgb):
    aux = {'params': p, 'classes': classes}
    if inpaint:
      aux.update(y=y, mask=m, mask_rgb=m_rgb)
    return eps_fn(aux, jax.random.key(0), x_t, tt)

  classes = None if model.num_classes is None else t
  return jax.jit(one).lower(params, x, t, classes, x, mask, mask).compile()


def dry_run(uncond: str, cond: str, *, viewset: str = '3x9', batch_size: int | None = None,
            guidance: float = 3.0) -> Report:
  """Compiles the chain of the two networks for every device and measures it (module docstring).

  Args:
    uncond, cond: config files (.py[:arg]) or model files of G_u and G_c.
    viewset: the view set (`viewsets`); its view count sets the chain's length.
    batch_size: scenes per chain call (None: 8, as `ivid-jax sample`), rounded up to a
      multiple of the device count as the sampler does.
    guidance: classifier-free guidance weight (any w > 0 costs the same).
  """
  nets = {'uncond': network_spec(uncond), 'cond': network_spec(cond)}
  n = nets['uncond'].model.image_size
  if nets['cond'].model.image_size != n:
    raise ValueError(f'{cond}: {nets["cond"].model.image_size} px, but {uncond} is {n} px')
  bsz = sampler.effective_batch_size(8 if batch_size is None else batch_size)
  mesh = sampler._mesh_for(bsz)  # pylint: disable=protected-access  # the sampler's own layout
  num_devices = 1 if mesh is None else mesh.size
  per_device = bsz // num_devices
  num_views = viewsets.make(viewset, num_scenes=1).num_views
  settings = chain_lib.for_resolution(n, steps_uncond=nets['uncond'].sample_steps,
                                      steps_cond=nets['cond'].sample_steps, kernel='jnp',
                                      group=per_device)

  replicated = None if mesh is None else NamedSharding(mesh, P())
  split = None if mesh is None else NamedSharding(mesh, P('data'))
  params = {k: checkpoint.abstract_params(s.model) for k, s in nets.items()}
  weights = {k: (_abstract(params[k], replicated), _abstract(jax.eval_shape(
      lambda s=s: schedules.make_schedule(s.schedule_name, s.num_steps)), replicated))
             for k, s in nets.items()}
  data = {'key_data': jax.ShapeDtypeStruct((bsz, 2), jnp.uint32, sharding=split),
          'modelviews': jax.ShapeDtypeStruct((bsz, num_views, 4, 4), jnp.float32, sharding=split)}
  if nets['uncond'].model.num_classes is not None:
    data['classes'] = jax.ShapeDtypeStruct((bsz,), jnp.int32, sharding=split)
  fns = {k: guidance_lib.make_eps_fn(s.model, float(guidance), inpaint=k == 'cond')
         for k, s in nets.items()}
  program = sampler._compiled_chain(  # pylint: disable=protected-access
      mesh, fns['uncond'], fns['cond'], tuple(sorted(data)), n, settings)
  t0 = time.monotonic()
  compiled = program.lower(weights, data).compile()
  seconds = time.monotonic() - t0
  chain_stats = hlo_stats.compiled_stats(compiled, num_devices)
  steps = {k: hlo_stats.compiled_stats(
      _guided_step(s.model, _abstract(params[k]), per_device, k == 'cond', float(guidance)), 1)
           for k, s in nets.items()}

  evals = {'uncond': settings.steps_uncond, 'cond': (num_views - 1) * settings.steps_cond}
  flops = sum(evals[k] * steps[k].flops for k in nets) / per_device
  bytes_ = sum(evals[k] * steps[k].bytes_accessed for k in nets) / per_device
  device = jax.devices()[0]
  return Report(
      uncond=uncond, cond=cond, uncond_params=_count(params['uncond']),
      cond_params=_count(params['cond']), image_size=n,
      compute_dtype=str(np.dtype(nets['cond'].model.dtype)), platform=device.platform,
      device_kind=device.device_kind, num_devices=num_devices, batch_size=bsz,
      scenes_per_device=per_device, viewset=viewset, num_views=num_views,
      steps_uncond=settings.steps_uncond, steps_cond=settings.steps_cond,
      compile_seconds=seconds, chain=chain_stats, uncond_step=steps['uncond'],
      cond_step=steps['cond'], flops_per_scene=flops, bytes_per_scene=bytes_)


def scenes_per_hour(flops_per_scene: float, chip: accelerators.Accelerator,
                    utilisation: float = UTILISATION) -> float:
  """Scenes a chip makes in an hour if it runs the networks at `utilisation` of its peak."""
  return 3600.0 * chip.peak_flops * utilisation / flops_per_scene


def format_report(r: Report) -> str:
  """The dry run's tables: per-device figures, then scenes per hour per accelerator."""
  h = hlo_stats.human
  c = r.chain
  rows = [
      ('networks', f'G_u {r.uncond_params:,} params ({r.uncond}), G_c {r.cond_params:,} '
                   f'params ({r.cond}), {r.image_size} px, compute {r.compute_dtype}'),
      ('devices', f'{r.num_devices} x {r.platform} ({r.device_kind}), each its own scenes, '
                  'weights replicated'),
      ('chain', f'{r.viewset}: {r.num_views} views; view 0 {r.steps_uncond} steps '
                f'({"DDPM" if r.steps_uncond >= 1000 else "DDIM"}), further views '
                f'{r.steps_cond} DDIM steps, guided (2 forward passes a step)'),
      ('scenes', f'{r.scenes_per_device} per device, {r.batch_size} per chain call'),
      ('compiled chain: arguments', h(c.argument_bytes)),
      ('compiled chain: temporaries', h(c.temp_bytes)),
      ('memory', f'{h(c.peak_bytes)}  (arguments + outputs + temporaries - donated)'),
      ('G_u step FLOPs', f'{r.uncond_step.flops / r.scenes_per_device:.4g} per scene'),
      ('G_c step FLOPs', f'{r.cond_step.flops / r.scenes_per_device:.4g} per scene'),
      ('FLOPs per scene', f'{r.flops_per_scene:.4g}  ({h(r.flops_per_scene, "FLOP")}; networks '
                          'only, not the aggregation)'),
      ('bytes accessed per scene', h(r.bytes_per_scene)),
  ]
  lines = hlo_stats.dry_run_lines('sampled', 'chain compiled', r.compile_seconds, rows)
  if r.platform == 'cpu':
    lines.append('  (memory: XLA:CPU\'s buffer assignment; a TPU\'s or GPU\'s differs, see '
                 'docs/performance.md, "Dry run".)')
  lines.append('')
  lines.append(f'Scenes per hour per chip: ESTIMATES at {UTILISATION:.0%} of the published '
               'peak (no accelerator measured), from the FLOPs per scene above:')
  lines.append('| chip | peak TFLOP/s | s per scene | scenes per hour |')
  lines.append('|---|---:|---:|---:|')
  for chip in accelerators.TARGETS + accelerators.AUTHORS:
    sph = scenes_per_hour(r.flops_per_scene, chip)
    lines.append(f'| {chip.name} | {chip.peak_flops / 1e12:.0f} ({chip.precision}) | '
                 f'{3600 / sph:.1f} | {sph:.0f} |')
  authors = (AUTHORS_V100_SECONDS['view0']
             + (r.num_views - 1) * AUTHORS_V100_SECONDS['further_view'])
  lines.append(f'The authors report about {authors:.0f} s a scene of {r.num_views} views on a '
               f'V100 ({AUTHORS_V100_SECONDS["view0"]:.0f} s for view 0, '
               f'{AUTHORS_V100_SECONDS["further_view"]:.0f} s for each further view), '
               f'{3600 / authors:.0f} scenes per hour.')
  view0 = r.steps_uncond * r.uncond_step.flops / r.scenes_per_device
  lines.append(f'Their view 0 is {view0 / 1e12:,.0f} TFLOP here: '
               f'{view0 / AUTHORS_V100_SECONDS["view0"] / 1e12:.0f} TFLOP/s in their '
               f'{AUTHORS_V100_SECONDS["view0"]:.0f} s, above a V100\'s float32 peak (15.7), so '
               'their figure is not float32 compute (its fp16 tensor cores: 125).')
  return '\n'.join(lines)


def main(uncond: str, cond: str, *, viewset: str = '3x9', batch_size: int | None = None,
         json_path: str | None = None) -> Report:
  """`ivid-jax sample --dry_run`: prints the tables, optionally writes the figures as JSON."""
  report = dry_run(uncond, cond, viewset=viewset, batch_size=batch_size)
  print(format_report(report))
  if json_path:
    with open(json_path, 'w', encoding='utf-8') as f:
      json.dump({'sample': [report.to_json()]}, f, indent=1)
  return report
