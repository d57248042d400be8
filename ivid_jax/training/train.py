"""The trainer of both IVID networks: `train_step` and `train_and_evaluate` (reference 5).

One loop trains either network, from a laptop CPU to a multi-host TPU pod:

- uncond (G_u): x_0 is the RGBD image; eps-MSE at t ~ U{0..T-1}; labels
  replaced by the null class with probability diffusion.label_dropout (0.1).
- cond (G_c): the training pair (warp to a random camera and back, the
  augmentations; `data.conditional.make_training_pair`) is built on device
  inside the step, then the 10-channel inpainting input (reference 2.7),
  label dropout, and optionally image-condition dropout
  (diffusion.image_dropout, `guidance.drop_image_condition`).

Randomness: step s uses fold_in(state.rng, s), split into one key per example
of the global batch; example i's timestep, noise, dropouts and hole noise come
from its own key (its training pair from the loader's per-example key). So the
step does not depend on the device count, the host count or the gradient
accumulation: 1 device, 8 devices, FSDP and k micro-batches give the same
numbers up to float summation order.

Gradient accumulation (optim.grad_accum_steps = k): the global batch is split
into k micro-batches whose gradients are *averaged* (a scan inside the one
jitted step), so the update is the full batch's. The authors' batch_split sums
the micro-batch losses instead; with Adam that only rescales the gradient,
which Adam undoes up to eps.

A non-finite loss or gradient skips the update (params, optimiser state and
EMA untouched; step and data advance), as the authors' fp16 loss scaler does;
`max_nonfinite_steps` in a row stop the run with a message. A checkpoint is
never written from a non-finite state.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import traverse_util
from jax import Array
from jax.sharding import PartitionSpec as P

from ivid_jax.data import conditional
from ivid_jax.data import pipeline
from ivid_jax.diffusion import gaussian
from ivid_jax.diffusion import guidance
from ivid_jax.diffusion import schedules
from ivid_jax.training import checkpoint
from ivid_jax.training import ema as ema_lib
from ivid_jax.training import init as init_lib
from ivid_jax.training import input as input_lib
from ivid_jax.training import parallel
from ivid_jax.training import previews
from ivid_jax.training import reporting
from ivid_jax.training import state as state_lib
from ivid_jax.training import workdir_lock

KINDS = ('uncond', 'cond')
IN_CHANNELS = {'uncond': 4, 'cond': 10}
INITS = ('torch', 'flax')


class StepConfig(NamedTuple):
  """The static settings of `train_step` (hashable, so a compiled step is reused).

  warp: make_training_pair keyword arguments as (name, value) pairs (cond only).
  """
  kind: str
  schedule: str = 'linear'
  num_steps: int = 1000
  label_dropout: float = guidance.LABEL_DROPOUT
  image_dropout: float = 0.0
  accum_steps: int = 1
  ema_decays: tuple[float, ...] = (0.9999,)
  ema_warmup: bool = False
  fsdp: bool = False
  fsdp_min_size: int = parallel.FSDP_MIN_SIZE
  warp: tuple[tuple[str, Any], ...] = ()


class NonFiniteError(FloatingPointError):
  """Too many consecutive updates had a non-finite loss or gradient."""


# ---------------------------------------------------------------------------------------------
# The step.


def _example_draws(key: Array, label: Array, *, shape: tuple[int, ...],
                   cfg: StepConfig) -> dict[str, Array]:
  """One example's randomness: t, eps [H, W, 4], its (dropped) label, image-dropout and hole keys."""
  k_t, k_eps, k_label, k_image, k_hole = jax.random.split(key, 5)
  return {'t': gaussian.sample_timesteps(k_t, 1, cfg.num_steps)[0],
          'eps': jax.random.normal(k_eps, shape),
          'label': guidance.drop_labels(k_label, label[None], cfg.label_dropout)[0],
          'k_image': k_image, 'k_hole': k_hole}


def _training_pairs(batch: dict[str, Array], cfg: StepConfig, mesh) -> dict[str, Array]:
  """make_training_pair on each device's part of the batch.

  shard_map keeps the per-image warp (a loop over images on CPU, a scatter
  rasteriser) local to each device instead of leaving XLA to partition it.
  check_vma=False: the rasteriser's while_loop carries device-invariant
  counters that shard_map's varying-axis typing would reject; every example's
  pair depends only on its own inputs, so nothing is device-dependent.
  """
  warp = dict(cfg.warp)
  fn = lambda rng, x0, camera: conditional.make_training_pair(rng, x0, camera, **warp)
  spec = P(parallel.AXIS)
  return jax.shard_map(fn, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec,
                       check_vma=False)(batch['rng'], batch['x0'], batch['camera'])


def _loss(params: Any, batch: dict[str, Array], keys: Array, dropout_key: Array, *, model,
          cfg: StepConfig, mesh) -> Array:
  """The authors' objective on one (micro-)batch: eps-MSE over everything. keys: [B] typed."""
  schedule = schedules.make_schedule(cfg.schedule, cfg.num_steps)
  if cfg.kind == 'cond':
    pair = _training_pairs(batch, cfg, mesh)
    x0 = pair['x0']
  else:
    x0 = batch['x0']
  d = jax.vmap(functools.partial(_example_draws, shape=x0.shape[1:], cfg=cfg))(
      keys, batch['label'])
  x_t = gaussian.q_sample(schedule, x0, d['t'], d['eps'])
  labels = None if model.num_classes is None else d['label']
  x_in = x_t
  if cfg.kind == 'cond':
    one = lambda fn: (lambda k, *xs: jax.tree.map(lambda a: a[0], fn(k, *(x[None] for x in xs))))
    mask, mask_rgb = pair['mask'], pair['mask_rgb']
    if cfg.image_dropout > 0:
      mask, mask_rgb = jax.vmap(one(functools.partial(
          guidance.drop_image_condition, p=cfg.image_dropout)))(d['k_image'], mask, mask_rgb)
    x_in = jax.vmap(one(guidance.inpaint_inputs))(d['k_hole'], x_t, pair['y'], mask, mask_rgb)
  pred = model.apply({'params': params}, x_in, d['t'], labels, train=True,
                     rngs={'dropout': dropout_key})
  return gaussian.eps_mse(pred, d['eps'])


def _micro_batches(tree: Any, k: int) -> Any:
  """[B, ...] -> [k, B / k, ...] with micro-batch j = examples {i k + j}: each micro-batch stays
  split over the devices as the batch was (a reshape of the local rows, no communication)."""
  return jax.tree.map(lambda x: jnp.moveaxis(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 1, 0),
                      tree)


def train_step(state: state_lib.TrainState, batch: dict[str, Array], *, model,
               tx: optax.GradientTransformation, cfg: StepConfig,
               mesh) -> tuple[state_lib.TrainState, dict[str, Array]]:
  """One optimiser step on a global batch (module docstring).

  Args:
    state: the TrainState (replicated, or FSDP-sharded over the mesh).
    batch: the loader's global batch: x0 float32 [B, H, W, 4], label int32 [B]
      (and, for cond, camera and rng), split over the mesh's 'data' axis.
    model: the UNet.
    tx: the optimiser.
    cfg: StepConfig.
    mesh: the device mesh.

  Returns:
    (new state, metrics: loss, grad_norm, param_norm, update_norm, finite,
    nonfinite, nonfinite_run; float32 / int32 scalars, replicated).
  """
  b = batch['x0'].shape[0]
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  k_examples, k_dropout = jax.random.split(rng)
  keys = jax.random.split(k_examples, b)
  params = parallel.gather(state.params, mesh) if cfg.fsdp else state.params
  grad_fn = jax.value_and_grad(functools.partial(_loss, model=model, cfg=cfg, mesh=mesh))
  k = cfg.accum_steps
  if k == 1:
    loss, grads = grad_fn(params, batch, keys, k_dropout)
  else:
    def body(carry, xs):
      j, micro_batch, micro_keys = xs
      l, g = grad_fn(params, micro_batch, micro_keys, jax.random.fold_in(k_dropout, j))
      return jax.tree.map(jnp.add, carry, (l, g)), None

    zeros = (jnp.float32(0.0), jax.tree.map(jnp.zeros_like, params))
    (loss, grads), _ = jax.lax.scan(body, zeros, (jnp.arange(k), _micro_batches(batch, k),
                                                  _micro_batches(keys, k)))
    loss, grads = loss / k, jax.tree.map(lambda g: g / k, grads)
  if cfg.fsdp:  # reduce-scatter instead of all-reduce
    grads = jax.lax.with_sharding_constraint(
        grads, parallel.state_shardings(grads, mesh, True, cfg.fsdp_min_size))

  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
  new_ema = ema_lib.update(state.ema, new_params, cfg.ema_decays, state.step, cfg.ema_warmup)
  keep = lambda new, old: jax.tree.map(lambda a, c: jnp.where(finite, a, c), new, old)
  run = jnp.where(finite, 0, state.nonfinite_run + 1).astype(jnp.int32)
  new_state = state.replace(
      step=state.step + 1, params=keep(new_params, state.params),
      opt_state=keep(opt_state, state.opt_state), ema=keep(new_ema, state.ema),
      nonfinite=state.nonfinite + (~finite).astype(jnp.int32), nonfinite_run=run)
  new_state = jax.lax.with_sharding_constraint(
      new_state, parallel.state_shardings(new_state, mesh, cfg.fsdp, cfg.fsdp_min_size))
  metrics = {'loss': loss, 'grad_norm': grad_norm,
             'param_norm': optax.tree.norm(new_state.params),
             'update_norm': jnp.where(finite, optax.tree.norm(updates), 0.0),
             'finite': finite.astype(jnp.float32), 'nonfinite': new_state.nonfinite,
             'nonfinite_run': run}
  return new_state, metrics


@functools.lru_cache(maxsize=16)
def jit_train_step(model, cfg: StepConfig, optim: tuple[tuple[str, Any], ...], mesh):
  """`train_step` bound and jitted once per (model, cfg, optimiser settings, mesh).

  The state is donated: its buffers become the new state's.
  """
  tx = state_lib.make_optimizer(**dict(optim))
  return jax.jit(functools.partial(train_step, model=model, tx=tx, cfg=cfg, mesh=mesh),
                 donate_argnums=0)


# ---------------------------------------------------------------------------------------------
# Config -> pieces.


def global_batch_size(config: ml_collections.ConfigDict) -> int:
  """config.input.batch_size, or per_device_batch_size x the number of devices."""
  if config.input.get('batch_size', 0):
    return int(config.input.batch_size)
  return int(config.input.per_device_batch_size) * jax.device_count()


def optim_settings(config: ml_collections.ConfigDict) -> tuple[tuple[str, Any], ...]:
  """`state.make_optimizer`'s arguments as sorted (name, value) pairs (hashable)."""
  o = config.optim
  settings = dict(lr=float(o.lr), warmup_steps=int(o.warmup_steps), schedule=o.schedule,
                  weight_decay=float(o.weight_decay), b1=float(o.b1), b2=float(o.b2),
                  eps=float(o.eps), grad_clip_norm=float(o.grad_clip_norm),
                  # Only a decaying schedule depends on the run's length (so extending a
                  # constant-lr run reuses the compiled step).
                  total_steps=int(config.total_steps) if o.schedule != 'constant' else 0)
  return tuple(sorted(settings.items()))


def step_config(config: ml_collections.ConfigDict) -> StepConfig:
  warp = ()
  if config.kind == 'cond':
    warp = tuple(sorted(dict(config.warp).items()))
  return StepConfig(
      kind=config.kind, schedule=config.diffusion.schedule,
      num_steps=int(config.diffusion.num_steps),
      label_dropout=float(config.diffusion.label_dropout),
      image_dropout=float(config.diffusion.get('image_dropout', 0.0)),
      accum_steps=int(config.optim.grad_accum_steps),
      ema_decays=tuple(float(d) for d in config.ema.decays), ema_warmup=bool(config.ema.warmup),
      fsdp=bool(config.parallel.fsdp), fsdp_min_size=int(config.parallel.fsdp_min_size),
      warp=warp)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field for settings that cannot train."""
  if config.kind not in KINDS:
    raise ValueError(f'kind must be one of {KINDS}, got {config.kind!r}')
  want = IN_CHANNELS[config.kind]
  if config.model.in_channels != want:
    raise ValueError(f'the {config.kind} network takes {want} input channels, but '
                     f'model.in_channels is {config.model.in_channels}')
  if config.init not in INITS:
    raise ValueError(f'init must be one of {INITS}, got {config.init!r}')
  labelled = config.model.get('num_classes') is not None
  if labelled and config.diffusion.label_dropout > 0 and not config.model.get('has_null_class'):
    raise ValueError('diffusion.label_dropout > 0 needs model.has_null_class=True (the null '
                     'class is label -1)')
  if config.kind == 'uncond' and config.diffusion.get('image_dropout', 0.0):
    raise ValueError('diffusion.image_dropout applies to the cond network only')
  if not all(0.0 <= d < 1.0 for d in config.ema.decays) or not config.ema.decays:
    raise ValueError(f'ema.decays must be rates in [0, 1), got {config.ema.decays}')
  for field in ('total_steps', 'checkpoint_every_steps', 'log_every_steps'):
    if int(config[field]) <= 0:
      raise ValueError(f'{field} must be > 0, got {config[field]}')
  if int(config.optim.grad_accum_steps) < 1:
    raise ValueError('optim.grad_accum_steps must be >= 1')


@functools.lru_cache(maxsize=8)
def _jit_flax_init(model):
  """Flax's init of the UNet, jitted once per model (on the default device)."""
  s = model.image_size
  x = jnp.zeros((1, s, s, model.in_channels))
  t = jnp.zeros((1,), jnp.int32)
  c = None if model.num_classes is None else jnp.zeros((1,), jnp.int32)
  return jax.jit(lambda key: model.init(key, x, t, c)['params'])


@functools.lru_cache(maxsize=8)
def _jit_create(optim: tuple[tuple[str, Any], ...], decays: tuple[float, ...], mesh, fsdp: bool,
                min_size: int):
  """state.create (optimiser state, EMAs) jitted, laid out as `parallel.state_shardings`."""
  tx = state_lib.make_optimizer(**dict(optim))

  def create(params, rng_data):
    state = state_lib.create(params, tx, decays, jax.random.wrap_key_data(rng_data))
    return jax.lax.with_sharding_constraint(
        state, parallel.state_shardings(state, mesh, fsdp, min_size))

  return jax.jit(create)


def put(tree: Any, shardings: Any) -> Any:
  """Host numpy arrays (the same on every process) -> global jax.Arrays with `shardings`."""
  return jax.tree.map(
      lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda idx, x=x: np.asarray(x)[idx]),
      tree, shardings)


def make_initial_state(config: ml_collections.ConfigDict, model, mesh) -> tuple[Any, Any, Any]:
  """(abstract state, its shardings, create()): create() makes the step-0 state, sharded.

  From scratch (config.init: Flax's init, then optionally the authors' PyTorch
  init drawn on the host) or, with config.init_from, from a trained network
  (widened 4 -> 10 input channels for G_c).
  """
  optim = optim_settings(config)
  decays = tuple(float(d) for d in config.ema.decays)
  fsdp, min_size = bool(config.parallel.fsdp), int(config.parallel.fsdp_min_size)
  k_params, k_train = jax.random.split(jax.random.key(config.seed))
  rng_data = np.asarray(jax.random.key_data(k_train))
  create_fn = _jit_create(optim, decays, mesh, fsdp, min_size)
  abstract_params = checkpoint.abstract_params(model)
  abstract = jax.eval_shape(create_fn, abstract_params, rng_data)
  shardings = parallel.state_shardings(abstract, mesh, fsdp, min_size)

  def create():
    if config.init_from:
      source = init_lib.read_pretrained(config.init_from, ema=bool(config.init_from_ema))
      params = init_lib.widen(source, abstract_params, where=config.init_from)
    else:
      params = jax.device_get(_jit_flax_init(model)(k_params))
      if config.init == 'torch':
        params = init_lib.torch_init(config.seed, params)
    return create_fn(put(params, shardings.params), put(rng_data, shardings.rng))

  return abstract, shardings, create


# ---------------------------------------------------------------------------------------------
# The loop.


def _mean_metrics(history: list[dict[str, Array]]) -> dict[str, float]:
  fetched = jax.device_get(history)
  out = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
  out['nonfinite'] = float(fetched[-1]['nonfinite'])
  out.pop('nonfinite_run')
  return out


def _check_nonfinite(metrics: dict[str, Array], step: int, limit: int, last_saved: int | None):
  run = int(metrics['nonfinite_run'])
  if run >= limit:
    where = (f'the last checkpoint (step {last_saved}) holds finite parameters'
             if last_saved is not None else 'no checkpoint was written')
    raise NonFiniteError(
        f'the loss or the gradients were NaN/inf at {run} consecutive steps ({step - run + 1}..'
        f'{step}); those updates were skipped and the run stops (max_nonfinite_steps={limit}). '
        f'{where}. Lower optim.lr, set optim.grad_clip_norm, use compute_dtype=float32, or '
        'check the data.')


def _flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  flat = traverse_util.flatten_dict(config.to_dict(), sep='.')
  return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> state_lib.TrainState:
  """Trains the network of `config` in `workdir`, resuming from its latest checkpoint.

  Writes config.json, checkpoints/, previews/ (PNG) and the logs (TensorBoard
  event files with clu, else metrics.jsonl). Call `parallel.initialize_distributed`
  first on a multi-host run.

  Only one run at a time trains in a workdir (`workdir_lock`): a second one
  stops at once with a WorkdirInUseError naming the first.

  Returns:
    The final TrainState.
  """
  check_config(config)
  workdir = os.path.abspath(workdir)
  with workdir_lock.hold(workdir):
    return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: str) -> state_lib.TrainState:
  """train_and_evaluate's run, in a workdir it holds."""
  checkpoint.write_config(workdir, config)
  mesh = parallel.make_mesh()
  model = checkpoint.make_model(config)
  batch_size = global_batch_size(config)
  cfg = step_config(config)
  parallel.check_batch(batch_size, mesh, cfg.accum_steps)
  logging.info('training %s (%s) on %s; global batch %d', config.kind, config.input.dataset,
               parallel.describe(mesh), batch_size)

  source = input_lib.make_source(image_size=model.image_size, **dict(config.input))
  input_lib.check_labels(source, config.input.dataset, model.num_classes,
                         bool(model.has_null_class))
  host_iterator = pipeline.make_loader(
      source, global_batch_size=batch_size, seed=config.seed, conditional=config.kind == 'cond',
      worker_count=int(config.input.get('worker_count', 0)))
  data = pipeline.device_prefetch(host_iterator, mesh)

  abstract, shardings, create_state = make_initial_state(config, model, mesh)
  ckpt = checkpoint.Checkpointer(workdir, keep=int(config.keep_checkpoints),
                                 keep_every_steps=int(config.keep_every_steps))
  latest = ckpt.latest_step()
  if latest is not None:
    state = ckpt.restore(latest, checkpoint.abstract_with_shardings(abstract, shardings), data)
  else:
    state = create_state()
  start = int(state.step)
  total = int(config.total_steps)

  writer = reporting.create_writer(workdir, config.writer)
  if start == 0:
    reporting.log_parameter_overview(state.params, writer)
    writer.write_hparams(_flat_hparams(config))
  progress = reporting.make_progress(num_train_steps=total, writer=writer,
                                     every_steps=int(config.log_every_steps), kind=config.writer)
  profile = reporting.make_profile(logdir=workdir, first_step=start + int(config.profile_first_step),
                                   num_steps=int(config.profile_steps), kind=config.writer)
  preview_every = int(config.preview_every_steps)
  preview_inputs = None
  if preview_every:
    preview_inputs = previews.make_inputs(
        kind=config.kind, num=int(config.preview.num), image_size=model.image_size,
        num_classes=model.num_classes, seed=config.seed, source=source,
        warp=dict(cfg.warp) if config.kind == 'cond' else None)

  def preview(step: int, params) -> None:
    with progress.timed('preview'):
      samples = previews.sample(
          params, preview_inputs, model=model, kind=config.kind, steps=int(config.preview.steps),
          guidance_w=float(config.preview.guidance), clip_denoised=config.preview.clip_denoised,
          eta=float(config.preview.get('eta', 0.0)),
          schedule_name=cfg.schedule,
          num_steps=cfg.num_steps, sharding=parallel.replicated(mesh))
      picture = previews.grid(samples, preview_inputs, config.kind)
    if jax.process_index() == 0:
      path = reporting.save_png(os.path.join(workdir, 'previews', f'{step:08d}.png'), picture)
      logging.info('preview of step %d: %s', step, path)
    writer.write_images(step, {'preview': picture[None]})

  p_train_step = jit_train_step(model, cfg, optim_settings(config), mesh)
  lr_fn = state_lib.learning_rate(**dict(optim_settings(config)))
  limit = int(config.max_nonfinite_steps)
  last_saved = latest
  history: list[dict[str, Array]] = []
  previous = None
  t0 = time.monotonic()
  try:
    for step in range(start + 1, total + 1):
      batch = next(data)
      state, metrics = p_train_step(state, batch)
      if previous is not None:  # one step behind, so the device keeps working meanwhile
        _check_nonfinite(previous, step - 1, limit, last_saved)
      previous = metrics
      history.append(metrics)
      progress(step)
      if profile is not None:
        profile(step)
      if step % int(config.log_every_steps) == 0 or step == total:
        _check_nonfinite(metrics, step, limit, last_saved)
        scalars = _mean_metrics(history)
        scalars['lr'] = float(lr_fn(step - 1))
        writer.write_scalars(step, scalars)
        history = []
        if step == start + int(config.log_every_steps):
          logging.info('first %d steps (with compilation) took %.1f s', step - start,
                       time.monotonic() - t0)
      if preview_every and (step % preview_every == 0 or step == total):
        preview(step, state.ema[0])
      if step % int(config.checkpoint_every_steps) == 0 or step == total:
        _check_nonfinite(metrics, step, limit, last_saved)
        if not np.isfinite(float(metrics['param_norm'])):  # cannot happen: updates are guarded
          raise NonFiniteError(f'step {step}: the parameters are not finite; not saving them')
        with progress.timed('checkpoint'):
          ckpt.save(step, state, data)
        last_saved = step
  finally:  # a stopped run still finishes the saves in flight
    ckpt.wait()
    ckpt.close()
    writer.flush()
  return state
