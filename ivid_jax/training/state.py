"""The training state and the optimiser (reference 5).

Everything a run needs to continue exactly is in `TrainState` (params,
optimiser state, the EMAs, the step, the PRNG key data and the non-finite
counters); the data iterator's position is saved beside it by `checkpoint`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import optax
from jax import Array

from ivid_jax.training import ema as ema_lib


@flax.struct.dataclass
class TrainState:
  """Attributes:
    step: int32 [] optimiser steps taken (skipped non-finite ones included).
    params: float32 UNet params (the master weights, whatever the compute dtype).
    opt_state: optax state.
    ema: tuple of params trees, one per EMA rate (config.ema.decays, in order).
    rng: uint32 [2] threefry key data; step s draws from fold_in(rng, s).
    nonfinite: int32 [] updates skipped for a non-finite loss or gradient, in total.
    nonfinite_run: int32 [] consecutive skipped updates up to this step.
  """
  step: Array
  params: Any
  opt_state: Any
  ema: tuple[Any, ...]
  rng: Array
  nonfinite: Array
  nonfinite_run: Array


def make_optimizer(*, lr: float, total_steps: int, warmup_steps: int = 0,
                   schedule: str = 'constant', weight_decay: float = 0.0, b1: float = 0.9,
                   b2: float = 0.999, eps: float = 1e-8,
                   grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
  """AdamW, as the authors: lr 1e-4 constant, no weight decay, PyTorch betas and eps, no clipping.

  Args:
    lr: peak learning rate.
    total_steps: the run's length (the end of a cosine decay).
    warmup_steps: linear warm-up from 0 (0: none).
    schedule: 'constant' (the authors') or 'cosine' (decay to 0 at total_steps).
    weight_decay: decoupled weight decay (AdamW's), on every parameter.
    b1, b2, eps: Adam's.
    grad_clip_norm: clip the gradient's global norm to this (0: no clipping).
  """
  lr_fn = learning_rate(lr=lr, total_steps=total_steps, warmup_steps=warmup_steps,
                        schedule=schedule)
  parts = [optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm > 0 else []
  parts.append(optax.adamw(lr_fn, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
  return optax.chain(*parts)


def learning_rate(*, lr: float, total_steps: int, warmup_steps: int = 0,
                  schedule: str = 'constant', **_) -> optax.Schedule:
  """The schedule `make_optimizer` uses, for logging."""
  if schedule == 'constant':
    main = optax.constant_schedule(lr)
  elif schedule == 'cosine':
    main = optax.cosine_decay_schedule(lr, max(total_steps - warmup_steps, 1))
  else:
    raise ValueError(f"optim.schedule must be 'constant' or 'cosine', got {schedule!r}")
  if warmup_steps > 0:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_steps), main],
                                [warmup_steps])
  return main


def create(params: Any, tx: optax.GradientTransformation, decays: Sequence[float],
           rng: Array) -> TrainState:
  """The state at step 0: EMAs equal to the initial params (the authors' start)."""
  return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params),
                    ema=ema_lib.init(params, decays), rng=jax.random.key_data(rng),
                    nonfinite=jnp.int32(0), nonfinite_run=jnp.int32(0))


def param_count(params: Any) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))
