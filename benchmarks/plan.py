"""The dry runs' FLOPs and bytes as a plan: step time, chip-hours, scenes per hour (estimates).

  python benchmarks/plan.py [--devices=8] [--utilisation=0.4] [--inputs=a.json,b.json,...]

Without --inputs it runs the dry runs itself, one process at a time: `ivid-jax
train --dry_run` of configs/imagenet128_uncond.py and configs/imagenet128_cond.py
(replicated and FSDP, --devices simulated CPU devices) and `ivid-jax sample --dry_run`
of the two; --inputs reads the JSON those commands write with --dry_run_json
instead. It prints markdown tables (docs/performance.md, "A plan for the
ImageNet-128 configs").

Every time here is an ESTIMATE from published peaks (ivid_jax/accelerators.py,
with their sources), under these assumptions:
- FLOPs and bytes accessed are XLA's cost analysis of the compiled step per
  device (at the config's 16 examples per device), compiled by XLA:CPU. The
  FLOPs are the program's; the bytes are the sum over XLA:CPU's fused ops,
  whose fusions are smaller than a TPU's or GPU's, so the memory bound overstates
  the traffic.
- compute bound = FLOPs / peak; memory bound = bytes accessed / HBM bandwidth;
  estimate = FLOPs / (peak x utilisation): the utilisation covers everything
  that keeps a chip from its peak (memory stalls, collectives, the training
  pair's rasteriser, input).
- The accelerators' peaks are bf16: the configs compute in float32 (the
  authors' G_u), so the estimate assumes --config.compute_dtype=bfloat16, or
  the default precision of float32 matmuls, which TPUs run as bf16 passes.
- Perfect data parallelism: 1M steps at a global batch of B cost
  1M x B / 16 chip-steps whatever the slice, and time on the slice is chip-hours
  over its chip count.
- The authors' setup: 8 GPUs x 16 (a global batch of 128; the GPU count is the
  paper summary's, their code does not fix it), float32, at the same utilisation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

from ivid_jax import accelerators

_DEVICES = flags.DEFINE_integer('devices', 8, 'Simulated devices of the dry runs.')
_UTILISATION = flags.DEFINE_float('utilisation', 0.4, 'Fraction of the peak FLOP/s assumed.')
_INPUTS = flags.DEFINE_list('inputs', [], 'JSON files written by --dry_run_json (default: run '
                            'the dry runs).')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ('imagenet128_uncond.py', 'imagenet128_cond.py')
TOTAL_STEPS = 1_000_000
AUTHORS_GPUS = 8
AUTHORS_BATCH_PER_GPU = 16


def _run(args: list[str], json_path: str) -> dict:
  cmd = [sys.executable, '-m', 'ivid_jax.main'] + args + [
      '--dry_run', f'--dry_run_devices={_DEVICES.value}', f'--dry_run_json={json_path}']
  print('running:', ' '.join(cmd[2:]), file=sys.stderr, flush=True)
  subprocess.run(cmd, check=True, cwd=os.path.dirname(json_path), stdout=sys.stderr)
  with open(json_path, encoding='utf-8') as f:
    return json.load(f)


def dry_runs() -> dict[str, list[dict]]:
  """{'train': [...], 'sample': [...]} from --inputs or from running the commands."""
  out: dict[str, list[dict]] = {'train': [], 'sample': []}
  if _INPUTS.value:
    docs = []
    for path in _INPUTS.value:
      with open(path, encoding='utf-8') as f:
        docs.append(json.load(f))
  else:
    tmp = tempfile.mkdtemp(prefix='ivid_jax_plan_')
    configs = [os.path.join(ROOT, 'configs', c) for c in CONFIGS]
    docs = [_run(['train', f'--config={c}', f'--config.parallel.fsdp={fsdp}'],
                 os.path.join(tmp, f'train_{i}_{fsdp}.json'))
            for i, c in enumerate(configs) for fsdp in (False, True)]
    docs.append(_run(['sample', f'--uncond={configs[0]}', f'--cond={configs[1]}'],
                     os.path.join(tmp, 'sample.json')))
  for doc in docs:
    for kind, reports in doc.items():
      out[kind] += reports
  return out


def _name(r: dict) -> str:
  return ('G_u' if r['kind'] == 'uncond' else 'G_c') + f' ({os.path.basename(r["config_name"])})'


def _fmt(x: float) -> str:
  return f'{x:,.0f}' if x >= 100 else f'{x:.3g}'


def train_table(reports: list[dict], u: float) -> str:
  """One row per (config, chip), from the replicated dry run; memory also from the FSDP one."""
  global_batch = AUTHORS_GPUS * AUTHORS_BATCH_PER_GPU
  lines = [
      f'| network | chip | peak TFLOP/s | HBM GB/s | HBM GiB | compute bound s/step | '
      f'memory bound s/step | estimate at {u:.0%} s/step | chip-hours, 1M steps at global '
      f'{global_batch} | days on {AUTHORS_GPUS} chips |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in reports:
    if r['fsdp']:
      continue  # the same FLOPs; its memory is in memory_table
    name = _name(r)
    # Per chip at the config's 16 examples per device.
    per_example = r['flops_per_step'] / r['per_device_batch']
    bytes_per_example = r['bytes_per_step'] / r['per_device_batch']
    b = AUTHORS_BATCH_PER_GPU
    for chip in accelerators.TARGETS + accelerators.AUTHORS:
      compute = per_example * b / chip.peak_flops
      memory = bytes_per_example * b / chip.hbm_bandwidth
      estimate = compute / u
      chip_hours = TOTAL_STEPS * (global_batch / b) * estimate / 3600
      label = chip.name + (" (the authors')" if chip in accelerators.AUTHORS else '')
      lines.append(
          f'| {name} | {label} | {chip.peak_flops / 1e12:.0f} ({chip.precision}) | '
          f'{chip.hbm_bandwidth / 1e9:,.0f} | {chip.hbm_bytes / 2**30:.1f} | {compute:.3f} | '
          f'{memory:.3f} | {estimate:.3f} | {_fmt(chip_hours)} | '
          f'{_fmt(chip_hours / AUTHORS_GPUS / 24)} |')
  return '\n'.join(lines)


def memory_table(reports: list[dict]) -> str:
  """Per-device memory of each dry run (XLA:CPU's), beside the chips' HBM."""
  gib = lambda x: f'{x / 2**30:.2f}'
  lines = ['| network | layout | devices | params + optimiser + EMA GiB | temporaries GiB | '
           'total GiB | all-reduce GiB | all-gather GiB |',
           '|---|---|---:|---:|---:|---:|---:|---:|']
  for r in reports:
    c = r['compiled']
    name = _name(r)
    lines.append(
        f'| {name} | {"FSDP" if r["fsdp"] else "replicated"} | {r["num_devices"]} | '
        f'{gib(r["params_bytes"] + r["opt_bytes"] + r["ema_bytes"])} | {gib(c["temp_bytes"])} | '
        f'{gib(c["peak_bytes"])} | {gib(c["collectives"]["all-reduce"]["bytes"])} | '
        f'{gib(c["collectives"]["all-gather"]["bytes"])} |')
  return '\n'.join(lines)


def sample_table(reports: list[dict], u: float) -> str:
  lines = [f'| chain | chip | s per scene, compute bound | s per scene, memory bound | '
           f'estimate at {u:.0%}: s per scene | scenes per chip-hour |',
           '|---|---|---:|---:|---:|---:|']
  for r in reports:
    name = (f'{r["viewset"]}, {r["steps_uncond"]} + {r["num_views"] - 1} x {r["steps_cond"]} '
            'steps')
    for chip in accelerators.TARGETS + accelerators.AUTHORS:
      compute = r['flops_per_scene'] / chip.peak_flops
      memory = r['bytes_per_scene'] / chip.hbm_bandwidth
      estimate = compute / u
      lines.append(f'| {name} | {chip.name} | {compute:.2f} | {memory:.2f} | {estimate:.1f} | '
                   f'{3600 / estimate:.0f} |')
  return '\n'.join(lines)


def main(argv: list[str]) -> None:
  del argv
  u = _UTILISATION.value
  runs = dry_runs()
  for r in runs['train']:
    print(f'{_name(r)}: {r["num_params"]:,} params, {r["per_device_batch"]} per device, '
          f'{r["flops_per_step"] / 1e12:.2f} TFLOP and {r["bytes_per_step"] / 2**30:.0f} GiB '
          f'accessed per device per step (XLA:CPU cost analysis, {r["num_devices"]} simulated '
          f'devices, {"FSDP" if r["fsdp"] else "replicated"}, {r["accum_steps"]} micro-batch(es))')
  for r in runs['sample']:
    print(f'sampling: {r["flops_per_scene"] / 1e12:.1f} TFLOP and '
          f'{r["bytes_per_scene"] / 2**30:.0f} GiB accessed per scene ({r["viewset"]}, '
          f'{r["steps_uncond"]} + {r["num_views"] - 1} x {r["steps_cond"]} guided steps)')
  print()
  print('Per-device memory (XLA:CPU memory analysis, 16 examples per device):\n')
  print(memory_table(runs['train']))
  print('\nTraining (ESTIMATES: module docstring):\n')
  print(train_table(runs['train'], u))
  if runs['sample']:
    print('\nSampling (ESTIMATES, networks only):\n')
    print(sample_table(runs['sample'], u))
  print('\nPeaks:')
  for chip in accelerators.TARGETS + accelerators.AUTHORS:
    print(f'- {chip.name}: {chip.source}')


if __name__ == '__main__':
  app.run(main)
