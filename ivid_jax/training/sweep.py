"""Sweeps: a file whose `get_sweep()` returns a list of config overrides, one run per entry.

  # configs/synthetic_uncond_sweep.py
  def get_sweep():
    return [{'optim.lr': lr, 'seed': seed} for lr in (1e-4, 2e-4) for seed in (0, 1)]

Each point's workdir is ROOT/<its overrides>, e.g. ROOT/optim.lr=0.0002,seed=1,
so points never share a workdir and a rerun resumes each one. `ivid-jax
sweep` prints one `ivid-jax train` command per point (to paste into a job
scheduler) or, with --run, trains them one after another in this process.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from typing import Any, Sequence

import ml_collections

Overrides = dict[str, Any]


def load_sweep(path: str) -> list[Overrides]:
  """The list of override dicts of a sweep file (module docstring)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such sweep file')
  spec = importlib.util.spec_from_file_location(f'_ivid_sweep_{abs(hash(path))}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise ValueError(f'{path}: a sweep file defines get_sweep() returning a list of dicts')
  points = list(module.get_sweep())
  for i, point in enumerate(points):
    if not isinstance(point, dict) or not point:
      raise ValueError(f'{path}: point {i} of get_sweep() is not a non-empty dict: {point!r}')
  if len({workdir_name(p) for p in points}) != len(points):
    raise ValueError(f'{path}: get_sweep() has repeated points')
  return points


def _format(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return '(' + ','.join(_format(v) for v in value) + (',)' if len(value) == 1 else ')')
  if isinstance(value, float):
    return repr(value)
  return str(value)


def _name(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return '-'.join(_name(v) for v in value)
  return _format(value)


def workdir_name(overrides: Overrides) -> str:
  """'optim.lr=0.0002,seed=1': the overrides in key order, safe as a folder name."""
  text = ','.join(f'{k}={_name(v)}' for k, v in sorted(overrides.items()))
  return re.sub(r'[^A-Za-z0-9._=,+-]', '_', text)


def apply(config: ml_collections.ConfigDict, overrides: Overrides) -> ml_collections.ConfigDict:
  """A copy of `config` with the dotted-path overrides set (unknown fields are an error)."""
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for part in parents:
      if part not in node:
        raise KeyError(f'sweep override {key!r}: the config has no field {part!r}')
      node = node[part]
    if leaf not in node:
      raise KeyError(f'sweep override {key!r}: the config has no field {leaf!r}')
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return config


def commands(config_arg: str, points: Sequence[Overrides], root: str) -> list[str]:
  """One `ivid-jax train` command line per point."""
  out = []
  for point in points:
    args = ['ivid-jax', 'train', f'--config={config_arg}',
            f'--workdir={os.path.join(root, workdir_name(point))}']
    args += [f'--config.{k}={_format(v)}' for k, v in sorted(point.items())]
    out.append(' '.join(shlex.quote(a) for a in args))
  return out


def run(config: ml_collections.ConfigDict, points: Sequence[Overrides], root: str) -> list[str]:
  """Trains every point one after another here. Returns their workdirs."""
  from ivid_jax.training import train  # pylint: disable=g-import-not-at-top
  workdirs = []
  for point in points:
    workdir = os.path.join(root, workdir_name(point))
    train.train_and_evaluate(apply(config, point), workdir)
    workdirs.append(workdir)
  return workdirs
