"""Checkpoints with orbax: the whole training state and the data iterator, saved asynchronously.

Layout of a workdir:
  config.json                  the resolved config of the run (written at every start)
  checkpoints/<step>/state     TrainState (params, optimiser state, EMAs, step, rng, counters)
  checkpoints/<step>/data      the grain iterator's position, one file per process

orbax writes a step into a temporary directory and renames it when every
host has finished, so a process killed mid-save leaves the previous steps
intact (the unfinished temporary directory is removed by the next run).
Every host calls `save`; each writes its own shards of the arrays.

`load_params(workdir)` gives the sampler a trained network without the optimiser state.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

from ivid_jax import atomic
from ivid_jax.data import pipeline
from ivid_jax.models import unet as unet_lib

CONFIG_FILE = 'config.json'
CHECKPOINTS = 'checkpoints'


# ---------------------------------------------------------------------------------------------
# The run's config.


def write_config(workdir: str, config: ml_collections.ConfigDict) -> str:
  """Writes config.json atomically (process 0 only). Returns its path."""
  path = os.path.join(workdir, CONFIG_FILE)
  if jax.process_index() != 0:
    return path
  return atomic.write_text_atomic(path, config.to_json_best_effort(indent=2, sort_keys=True) + '\n')


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config.json of a training workdir."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{workdir}: not a training workdir (no {CONFIG_FILE}); train one '
                            'with `ivid-jax train --config=... --workdir=DIR`')
  with open(path, encoding='utf-8') as f:
    try:
      return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not valid JSON ({e})') from None


def make_model(config: ml_collections.ConfigDict) -> unet_lib.UNet:
  """The UNet of a config: `config.model` fields, compute dtype `config.compute_dtype`."""
  dtypes = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
  name = config.get('compute_dtype', 'float32')
  if name not in dtypes:
    raise ValueError(f'compute_dtype must be one of {sorted(dtypes)}, got {name!r}')
  return unet_lib.from_backbone_args(dict(config.model), dtype=dtypes[name])


# ---------------------------------------------------------------------------------------------
# The checkpoint manager.


class Checkpointer:
  """An orbax CheckpointManager for TrainState + the data iterator.

  Args:
    workdir: the run's folder (checkpoints go to workdir/checkpoints).
    keep: the latest `keep` checkpoints are kept.
    keep_every_steps: also keep every checkpoint at a multiple of this (0: none).
    asynchronous: write in a background thread (the step loop continues).
  """

  def __init__(self, workdir: str, *, keep: int = 2, keep_every_steps: int = 0,
               asynchronous: bool = True):
    policies = [checkpoint_managers.LatestN(n=max(keep, 1))]
    if keep_every_steps:
      policies.append(checkpoint_managers.EveryNSteps(interval_steps=keep_every_steps))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
        enable_async_checkpointing=asynchronous, cleanup_tmp_directories=True, create=True)
    self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINTS)
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    # orbax 0.12 cleans up temporary paths in a thread started here and awaited only by the
    # first save: a run failing before then (a missing init_from, a restore error) would exit
    # under that thread, which then logs a traceback at interpreter shutdown. Await it now.
    getattr(self.manager, '_maybe_await_cleanup_tmp_directory', lambda: None)()

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_iterator: Any = None) -> None:
    """Starts saving `state` (and the iterator's position) as `step` (asynchronously)."""
    items = {'state': ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items['data'] = pipeline.orbax_save_args(data_iterator)
    self.manager.save(step, args=ocp.args.Composite(**items))

  def restore(self, step: int, abstract_state: Any, data_iterator: Any = None) -> Any:
    """The TrainState of `step`, laid out as `abstract_state` (ShapeDtypeStructs with shardings).

    The data iterator, if given, is moved to the saved position.
    """
    items = {'state': ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items['data'] = pipeline.orbax_restore_args(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    logging.info('restored step %d from %s', step, self.directory)
    return restored['state']

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `abstract` carrying `shardings` (what orbax restores into)."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)


# ---------------------------------------------------------------------------------------------
# Trained networks for the sampler.


def abstract_params(model: unet_lib.UNet) -> Any:
  """The UNet's params as ShapeDtypeStructs (no memory, no compute)."""
  s = model.image_size
  classes = None if model.num_classes is None else jnp.zeros((1,), jnp.int32)
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, s, s, model.in_channels)), jnp.zeros((1,), jnp.int32),
      classes))['params']


def load_params(workdir: str, *, ema: bool | float = True,
                step: int | None = None) -> tuple[unet_lib.UNet, Any]:
  """A trained network from a training workdir: (model, params) for the sampler.

  Args:
    workdir: the folder given to `ivid-jax train --workdir`.
    ema: True for the first EMA rate of config.ema.decays, a rate (e.g. 0.9999) for
      that EMA, False for the raw (optimised) params.
    step: a checkpointed step (default: the latest).

  Returns:
    (UNet built from the run's config, params as numpy float32 arrays).
  """
  workdir = os.path.abspath(workdir)
  config = read_config(workdir)
  model = make_model(config)
  directory = os.path.join(workdir, CHECKPOINTS)
  options = ocp.CheckpointManagerOptions(read_only=True, create=False)
  with ocp.CheckpointManager(directory, options=options) as manager:
    steps = manager.all_steps()
    if not steps:
      raise FileNotFoundError(f'{workdir}: no checkpoint in {directory}')
    step = max(steps) if step is None else step
    if step not in steps:
      raise ValueError(f'{workdir}: no checkpoint of step {step} (have {sorted(steps)})')
    decays = tuple(config.ema.decays)
    if ema is False:
      key = 'params'
    else:
      index = 0 if ema is True else _ema_index(decays, float(ema), workdir)
      key = ('ema', index)
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                                         sharding=_cpu_sharding()),
                          abstract_params(model))
    if key == 'params':
      item = {'params': shapes}
    else:
      item = {'ema': [shapes if i == key[1] else None for i in range(len(decays))]}
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(item=item, partial_restore=True)))['state']
  params = restored['params'] if key == 'params' else restored['ema'][key[1]]
  return model, jax.tree.map(np.asarray, params)


def _cpu_sharding():
  return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


def _ema_index(decays: tuple[float, ...], rate: float, workdir: str) -> int:
  for i, d in enumerate(decays):
    if abs(d - rate) < 1e-12:
      return i
  raise ValueError(f'{workdir}: no EMA of rate {rate} (config.ema.decays = {list(decays)})')


def export(workdir: str, out: str, *, ema: bool | float = True,
           step: int | None = None) -> tuple[str, str]:
  """Writes a workdir's network as one model file (`models.model_file`). Returns (path, summary)."""
  from ivid_jax.models import model_file  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(workdir)
  config = read_config(workdir)
  if step is None:
    with ocp.CheckpointManager(os.path.join(workdir, CHECKPOINTS),
                               options=ocp.CheckpointManagerOptions(read_only=True,
                                                                    create=False)) as manager:
      step = manager.latest_step()
  model, params = load_params(workdir, ema=ema, step=step)
  fields = {k: getattr(model, k) for k in model_file.unet_field_names()}
  which = 'raw params' if ema is False else (
      f'EMA {config.ema.decays[0] if ema is True else ema}')
  path = model_file.save(out, unet=fields, params=params, kind=config.kind,
                         diffusion={'schedule': config.diffusion.schedule,
                                    'num_steps': int(config.diffusion.num_steps)},
                         step=int(step), workdir=workdir, weights=which,
                         config=json.loads(config.to_json_best_effort()))
  return path, f'{config.kind} network, step {step}, {which}'
