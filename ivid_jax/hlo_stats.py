"""What a compiled XLA program costs per device: memory, FLOPs, bytes accessed and collectives.

Read from a `jax.stages.Compiled` (`jax.jit(f).lower(*abstract_args).compile()`),
so nothing is run and no weights need exist:

- `memory_analysis()`: the bytes of the arguments, outputs, temporaries and
  donated (aliased) buffers of one device's program.
- `cost_analysis()`: XLA's count of FLOPs and of bytes read + written by one
  device's program (a loop body is counted once, not per iteration).
- collectives: every all-reduce, all-gather, reduce-scatter, all-to-all and
  collective-permute in the compiled HLO text, with the size of the full buffer
  each one works on, once per loop iteration (`collective_bytes`).

A program compiled for N devices by the SPMD partitioner is one device's
program, so every figure here is per device.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import numpy as np

COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute')

_DTYPE_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2,
                's32': 4, 'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8, 'c64': 8,
                'c128': 16, 'f8e4m3fn': 1, 'f8e5m2': 1, 's4': 1, 'u4': 1}
# `%name = SHAPE op(`: SHAPE is one array shape or a tuple of them.
_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(?P<shape>\(.*?\)|[\w]+\[[^\]]*\](?:\{[^}]*\})?)\s+'
    r'(?P<op>[\w\-]+)\(')
_ARRAY = re.compile(r'(?P<dtype>[a-z]+\d*[a-z0-9]*)\[(?P<dims>[^\]]*)\]')


def shape_bytes(shape: str) -> list[int]:
  """The bytes of each array in an HLO shape string: 'f32[256,128]{1,0}' -> [131072]."""
  out = []
  for m in _ARRAY.finditer(shape):
    if m['dtype'] not in _DTYPE_BYTES:
      continue
    dims = [int(d) for d in m['dims'].split(',') if d.strip()]
    out.append(int(np.prod(dims, dtype=np.int64)) * _DTYPE_BYTES[m['dtype']])
  return out


@dataclasses.dataclass(frozen=True)
class Collective:
  """count: instructions executed per run of the program; bytes: their full buffers, summed.

  An instruction in a loop body counts once per iteration (the loop's known trip count);
  unknown_trips counts those in loops whose trip count XLA does not know (counted once).
  """
  count: int = 0
  bytes: int = 0
  unknown_trips: int = 0


# Computation headers start at column 0 (instructions are indented).
_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%(?P<name>[\w.\-]+)[\s(].*\{\s*$')
_CALLEE = re.compile(r'(?:to_apply|calls|condition|body)=%?(?P<name>[\w.\-]+)')
_BRANCHES = re.compile(r'branch_computations=\{(?P<names>[^}]*)\}')
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(?P<n>\d+)"\}')


def _computations(hlo_text: str) -> tuple[dict[str, list[str]], str | None]:
  """{computation name: its instruction lines} and the entry computation's name."""
  comps: dict[str, list[str]] = {}
  entry, current = None, None
  for line in hlo_text.splitlines():
    m = _COMPUTATION.match(line)
    if m:
      current = m['name']
      comps[current] = []
      if line.startswith('ENTRY'):
        entry = current
    elif line.strip() == '}':
      current = None
    elif current is not None:
      comps[current].append(line)
  return comps, entry


def _multipliers(comps: dict[str, list[str]], entry: str | None) -> dict[str, tuple[int, bool]]:
  """How many times each computation runs per program run, and whether a trip count was unknown."""
  if entry is None:
    return {name: (1, False) for name in comps}
  runs: dict[str, tuple[int, bool]] = {}
  stack = [(entry, 1, False)]
  while stack:
    name, n, unknown = stack.pop()
    if name not in comps:
      continue
    old = runs.get(name, (0, False))
    runs[name] = (old[0] + n, old[1] or unknown)
    for line in comps[name]:
      trips = None
      if ' while(' in line:
        t = _TRIP_COUNT.search(line)
        trips = int(t['n']) if t else None
      for m in _CALLEE.finditer(line):
        loop = line[m.start():].startswith('body=') and ' while(' in line
        k = (trips or 1) if loop else 1
        stack.append((m['name'], n * k, unknown or (loop and trips is None)))
      b = _BRANCHES.search(line)
      if b:
        for callee in b['names'].split(','):
          stack.append((callee.strip().lstrip('%'), n, unknown))
  return runs


def collective_bytes(hlo_text: str, num_devices: int) -> dict[str, Collective]:
  """Every collective of a compiled HLO module, by kind, with the bytes of its full buffer.

  "Full buffer" is the unsharded array the collective works on, per device:
  an all-reduce's operand (= its result), an all-gather's result, a
  reduce-scatter's operand (its result x the group size, taken as
  `num_devices`: the project's meshes are 1-D), an all-to-all's or a
  collective-permute's operand. On a ring, a device sends and receives about
  2 (n-1)/n of that for an all-reduce and (n-1)/n for the others. Async forms
  (`all-gather-start`, ...) count once at their start. A collective in a loop
  (e.g. the micro-batches of gradient accumulation) counts once per iteration.

  Args:
    hlo_text: `compiled.as_text()`.
    num_devices: the size of the (1-D) device group of the reduce-scatters.

  Returns:
    {kind: Collective} for every kind in COLLECTIVES (zero when absent).
  """
  comps, entry = _computations(hlo_text)
  if not comps:  # a bare instruction list
    comps, entry = {'main': hlo_text.splitlines()}, None
  runs = _multipliers(comps, entry)
  found = {kind: [0, 0, 0] for kind in COLLECTIVES}
  for name, lines in comps.items():
    n, unknown = runs.get(name, (1, False))
    if n == 0:
      continue
    for line in lines:
      m = _INSTRUCTION.match(line)
      if m is None:
        continue
      op = m['op']
      kind = op[:-len('-start')] if op.endswith('-start') else op
      if kind not in found:
        continue
      sizes = shape_bytes(m['shape'])
      if not sizes:
        continue
      if op.endswith('-start') and kind in ('all-gather', 'collective-permute'):
        # (operand, result[, contexts]): the gathered result is the largest; a permute's
        # operand is the first.
        size = max(sizes) if kind == 'all-gather' else sizes[0]
      elif kind == 'reduce-scatter':
        size = sum(sizes) * num_devices
      else:
        size = sum(sizes)
      found[kind][0] += n
      found[kind][1] += size * n
      found[kind][2] += int(unknown)
  return {kind: Collective(c, b, u) for kind, (c, b, u) in found.items()}


@dataclasses.dataclass(frozen=True)
class CompiledStats:
  """One device's program, from XLA's analyses (bytes, FLOPs; module docstring).

  peak_bytes: arguments + outputs + temporaries - aliased (donated) bytes: the
    device memory the program's buffers take (XLA allocates its temporaries as
    one block for the whole program).
  xla_peak_bytes: `peak_memory_in_bytes` as the backend reports it (0: none).
    XLA:CPU leaves its temporaries out of it (measured: it is about the
    arguments' size), so it is kept for the record, not used.
  """
  flops: float
  bytes_accessed: float
  argument_bytes: int
  output_bytes: int
  temp_bytes: int
  alias_bytes: int
  generated_code_bytes: int
  peak_bytes: int
  xla_peak_bytes: int
  collectives: dict[str, Collective]

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d['collectives'] = {k: dataclasses.asdict(v) for k, v in self.collectives.items()}
    return d


def compiled_stats(compiled: jax.stages.Compiled, num_devices: int) -> CompiledStats:
  """CompiledStats of a compiled program (per device)."""
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0] if cost else {}
  cost = cost or {}
  arg, out = int(mem.argument_size_in_bytes), int(mem.output_size_in_bytes)
  temp, alias = int(mem.temp_size_in_bytes), int(mem.alias_size_in_bytes)
  peak = int(getattr(mem, 'peak_memory_in_bytes', 0) or 0)
  return CompiledStats(
      flops=float(cost.get('flops', 0.0)), bytes_accessed=float(cost.get('bytes accessed', 0.0)),
      argument_bytes=arg, output_bytes=out, temp_bytes=temp, alias_bytes=alias,
      generated_code_bytes=int(mem.generated_code_size_in_bytes),
      peak_bytes=arg + out + temp - alias, xla_peak_bytes=peak,
      collectives=collective_bytes(compiled.as_text(), num_devices))


def per_device_bytes(abstract: Any, shardings: Any) -> int:
  """Bytes of one device's shards of a pytree of arrays with `shardings` (the largest shard)."""
  total = 0
  for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)):
    shard = s.shard_shape(tuple(a.shape))
    total += int(np.prod(shard, dtype=np.int64)) * np.dtype(a.dtype).itemsize
  return total


def tree_bytes(abstract: Any) -> int:
  """Bytes of a whole (unsharded) pytree of arrays or ShapeDtypeStructs."""
  return sum(int(np.prod(a.shape, dtype=np.int64)) * np.dtype(a.dtype).itemsize
             for a in jax.tree.leaves(abstract))


def human(n: float, unit: str = 'B') -> str:
  """1536 -> '1.5 KiB'-style, with binary prefixes for bytes and decimal ones otherwise."""
  base, prefixes = (1024.0, ('', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi')) if unit == 'B' else (
      1000.0, ('', 'k', 'M', 'G', 'T', 'P', 'E'))
  x = float(n)
  for p in prefixes:
    if abs(x) < base or p == prefixes[-1]:
      return f'{x:.3g} {p}{unit}' if p else f'{x:.0f} {unit}'
    x /= base
  return f'{x:.3g} {unit}'


def dry_run_lines(done: str, compiled: str, compile_seconds: float,
                  rows: list[tuple[str, str]]) -> list[str]:
  """A dry run's header ("nothing was <done>") and its (name, value) rows, names aligned."""
  width = max(len(k) for k, _ in rows)
  lines = [f'DRY RUN: nothing was {done} or written. Per device ({compiled}, or loaded from the '
           f'compilation cache, in {compile_seconds:.0f} s):']
  return lines + [f'  {k:<{width}}  {v}' for k, v in rows]
