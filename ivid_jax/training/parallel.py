"""Data parallelism over every device of every host, optionally with FSDP (ZeRO-3 style).

The training step is one `jax.jit` program over a 1-D `Mesh` with axis
'data' spanning all devices of all processes (what `pmap` is built on in this
JAX). The global batch is split along 'data'; its mean loss makes XLA average
the gradients over the axis (an all-reduce). Random draws of the step are made
on the global arrays: with JAX's partitionable threefry (the default) they are
the same bits whatever the device count, so 8 devices give the 1-device step.

FSDP: params, optimiser state and EMA are sharded over the same axis (each
large leaf split along its largest axis that divides by the device count),
gathered for the forward / backward pass and their gradients reduce-scattered,
so a 421.5M-parameter model with AdamW and one EMA (6.7 GB in float32) needs
about 6.7 GB / devices per device for its state plus one gathered copy.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = 'data'
# Leaves smaller than this stay replicated under FSDP: sharding biases and norms saves nothing.
FSDP_MIN_SIZE = 2 ** 16


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins this process to a multi-host run (`jax.distributed.initialize`).

  With no arguments JAX detects the cluster (Cloud TPU VMs, SLURM, ...). Elsewhere
  pass the coordinator's host:port (process 0's address), the process count and
  this process's id. CPU processes exchange through gloo collectives.
  """
  if coordinator_address is None and (num_processes or process_id):
    raise ValueError('--num_processes / --process_id need --coordinator_address (host:port of '
                     'process 0)')
  if jax.config.jax_cpu_collectives_implementation in (None, '', 'none'):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  logging.info('process %d of %d, %d local of %d devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def make_mesh(devices: Any = None) -> Mesh:
  """A 1-D mesh ('data',) over `devices` (default: every device of every process)."""
  if devices is None:
    return jax.make_mesh((jax.device_count(),), (AXIS,),
                         axis_types=(jax.sharding.AxisType.Auto,))
  return Mesh(np.asarray(devices), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The leading (batch) axis split over 'data'."""
  return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def fsdp_spec(shape: tuple[int, ...], num_shards: int, min_size: int = FSDP_MIN_SIZE) -> P:
  """P splitting the largest axis of `shape` divisible by num_shards, or P() (replicated)."""
  if num_shards <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for axis in sorted(range(len(shape)), key=lambda a: (-shape[a], -a)):
    if shape[axis] % num_shards == 0:
      spec = [None] * len(shape)
      spec[axis] = AXIS
      return P(*spec)
  return P()


def state_shardings(abstract_state: Any, mesh: Mesh, fsdp: bool,
                    min_size: int = FSDP_MIN_SIZE) -> Any:
  """NamedShardings for a pytree: replicated, or FSDP (`fsdp_spec`) per leaf."""
  n = mesh.shape[AXIS]

  def one(leaf):
    spec = fsdp_spec(tuple(leaf.shape), n, min_size) if fsdp else P()
    return NamedSharding(mesh, spec)

  return jax.tree.map(one, abstract_state)


def gather(tree: Any, mesh: Mesh) -> Any:
  """Inside jit: constrain a (possibly FSDP-sharded) tree to replicated, i.e. all-gather it."""
  return jax.lax.with_sharding_constraint(tree, jax.tree.map(lambda _: replicated(mesh), tree))


def check_batch(global_batch: int, mesh: Mesh, accum_steps: int = 1) -> None:
  """The global batch must split evenly into micro-batches and over the devices."""
  n = mesh.shape[AXIS]
  if global_batch % accum_steps or (global_batch // accum_steps) % n:
    raise ValueError(f'global batch {global_batch} must split into {accum_steps} micro-batch(es) '
                     f'whose size divides by the {n} devices')


def describe(mesh: Mesh) -> str:
  d = jax.devices()[0]
  return (f'{jax.process_count()} process(es), {mesh.shape[AXIS]} {d.platform} device(s) '
          f'({d.device_kind}), pid {os.getpid()}')
