"""The trainer: both networks learn, the step ignores the device layout, resume is exact, NaN guard,
and its checkpoints reach the sampler (load_params, export).

Every run here is the tiny 16 px config on the 8 simulated CPU devices; the
compiled init and step are shared by all tests of the session (same model and
settings), so a test costs its steps, not a compilation.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image

from ivid_jax.configs import tiny_cond
from ivid_jax.configs import tiny_uncond
from ivid_jax.data import pipeline
from ivid_jax.models import model_file
from ivid_jax.training import checkpoint
from ivid_jax.training import load_params
from ivid_jax.training import parallel
from ivid_jax.training import train

STEPS = 24


def _config(kind='uncond', size=None, **overrides):
  """The tiny config (size 'micro': its smaller UNet) of the test's length, with overrides."""
  config = (tiny_uncond if kind == 'uncond' else tiny_cond).get_config(size)
  config.writer = 'basic'
  config.preview_every_steps = 0
  config.total_steps, config.log_every_steps, config.checkpoint_every_steps = STEPS, 6, 12
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  return [r['scalars']['loss'] for r in records if 'loss' in r.get('scalars', {})]


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


@pytest.fixture(scope='module')
def uncond_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('uncond'))
  state = train.train_and_evaluate(_config(preview_every_steps=STEPS), workdir)
  return workdir, _host(state)


def test_uncond_loss_is_finite_and_falls(uncond_run):
  workdir, state = uncond_run
  losses = _losses(workdir)
  assert len(losses) == STEPS // 6 and np.all(np.isfinite(losses))
  # eps-MSE starts at ~1 (the zero-initialised output layer predicts 0); the tiny
  # network at lr 1e-3 halves it within 24 steps (measured 0.97 -> 0.3-0.5).
  assert losses[0] > 0.8 and losses[-1] < 0.7 * losses[0], losses
  assert int(state.step) == STEPS and int(state.nonfinite) == 0


def test_a_preview_png_is_written(uncond_run):
  workdir, _ = uncond_run
  picture = Image.open(os.path.join(workdir, 'previews', f'{STEPS:08d}.png'))
  # 4 samples of 16 px in one row of RGB over one row of depth, 2 px gaps.
  assert picture.size == (4 * 16 + 3 * 2, 2 * 16 + 2)
  assert np.asarray(picture).std() > 10  # not a blank image


def test_resume_is_bit_identical(uncond_run, tmp_path):
  _, full = uncond_run
  half = train.train_and_evaluate(_config(total_steps=STEPS // 2), str(tmp_path))
  assert int(half.step) == STEPS // 2
  resumed = train.train_and_evaluate(_config(), str(tmp_path))
  resumed = _host(resumed)
  for name in ('params', 'opt_state', 'ema', 'step', 'rng'):
    for a, b in zip(jax.tree.leaves(getattr(full, name)), jax.tree.leaves(getattr(resumed, name))):
      np.testing.assert_array_equal(a, b, err_msg=name)


def test_the_unet_gets_the_authors_pytorch_init(uncond_run):
  config = _config()
  model = checkpoint.make_model(config)
  _, _, create = train.make_initial_state(config, model, parallel.make_mesh())
  params = traverse_util.flatten_dict(_host(create().params), sep='/')
  zero = sorted(k for k, v in params.items() if k.endswith('kernel') and not v.any())
  # The authors' zero_module layers: each ResBlock's out conv, attention proj_out, the head.
  assert zero and all(k.split('/')[-2] in ('out_conv', 'proj_out', 'out_2') for k in zero), zero
  assert len(zero) == sum(k.endswith('out_conv/kernel') for k in params) + sum(
      k.endswith('proj_out/kernel') for k in params) + 1
  for name, kernel in params.items():
    if not name.endswith('kernel') or name in zero:
      continue
    bound = 1 / np.sqrt(np.prod(kernel.shape[:-1]))  # U(+-1/sqrt(fan_in)), std bound/sqrt(3)
    assert np.abs(kernel).max() <= bound
    if kernel.size >= 2000:  # std of n uniform draws: within 10% for n >= 2000
      np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.1, err_msg=name)
    bias = params[name[:-len('kernel')] + 'bias']
    assert np.abs(bias).max() <= bound and bias.any()


def test_load_params_gives_the_ema_or_the_raw_params_of_any_step(uncond_run):
  workdir, state = uncond_run
  model, ema = load_params(workdir)
  assert model.in_channels == 4 and model.image_size == 16
  for a, b in zip(jax.tree.leaves(state.ema[0]), jax.tree.leaves(ema)):
    np.testing.assert_array_equal(a, b)
  _, second = load_params(workdir, ema=0.99)  # tiny_uncond's decays: (0.9, 0.99)
  for a, b in zip(jax.tree.leaves(state.ema[1]), jax.tree.leaves(second)):
    np.testing.assert_array_equal(a, b)
  _, raw = load_params(workdir, ema=False)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(raw)):
    np.testing.assert_array_equal(a, b)
  _, earlier = load_params(workdir, ema=False, step=STEPS // 2)
  assert not np.array_equal(earlier['out_2']['kernel'], raw['out_2']['kernel'])
  with pytest.raises(ValueError, match=f'no checkpoint of step {STEPS - 1}'):
    load_params(workdir, step=STEPS - 1)
  with pytest.raises(ValueError, match='no EMA of rate 0.5'):
    load_params(workdir, ema=0.5)
  with pytest.raises(FileNotFoundError, match='not a training workdir'):
    load_params(os.path.dirname(workdir))


def test_export_writes_a_model_file_the_sampler_loads(uncond_run, tmp_path):
  workdir, state = uncond_run
  out = str(tmp_path / 'uncond.msgpack')
  result = subprocess.run([sys.executable, '-m', 'ivid_jax.main', 'export', f'--workdir={workdir}',
                           f'--out={out}'], capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert f'uncond network, step {STEPS}, EMA 0.9' in result.stdout
  loaded = model_file.load(out, expect_kind='uncond')
  assert loaded.meta['step'] == STEPS and loaded.meta['config']['optim']['lr'] == 1e-3
  assert loaded.diffusion == {'schedule': 'linear', 'num_steps': 1000}
  assert loaded.model == checkpoint.make_model(checkpoint.read_config(workdir))
  for a, b in zip(jax.tree.leaves(state.ema[0]), jax.tree.leaves(loaded.params)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # compiles the conditional step (warp + UNet): minutes on 2 cores
def test_cond_fine_tuned_from_uncond_learns(uncond_run, tmp_path):
  workdir, _ = uncond_run
  state = train.train_and_evaluate(_config('cond', init_from=workdir), str(tmp_path))
  losses = _losses(str(tmp_path))
  assert np.all(np.isfinite(losses)) and int(state.step) == STEPS
  # The condition (blurred target RGB inside the mask) makes the task easier than
  # G_u's; the widened first conv starts ignoring it, so the loss still falls.
  assert losses[-1] < losses[0], losses


def test_init_from_widens_the_first_conv_with_zeros(uncond_run):
  workdir, _ = uncond_run
  config = _config('cond', init_from=workdir)
  model = checkpoint.make_model(config)
  _, _, create = train.make_initial_state(config, model, parallel.make_mesh())
  params = _host(create().params)
  _, source = checkpoint.load_params(workdir)  # its first EMA
  first = params['input_blocks_0_0']['kernel']
  assert first.shape == (3, 3, 10, 16)
  np.testing.assert_array_equal(first[:, :, :4], source['input_blocks_0_0']['kernel'])
  np.testing.assert_array_equal(first[:, :, 4:], 0.0)
  flat, src = traverse_util.flatten_dict(params), traverse_util.flatten_dict(source)
  for key in flat:
    if key != ('input_blocks_0_0', 'kernel'):
      np.testing.assert_array_equal(flat[key], src[key], err_msg=str(key))


def _one_step(config, mesh, state, batch):
  model = checkpoint.make_model(config)
  step = train.jit_train_step(model, train.step_config(config), train.optim_settings(config),
                              mesh)
  _, shardings, _ = train.make_initial_state(config, model, mesh)
  state = train.put(state, shardings)
  batch = pipeline.to_global(batch, parallel.batch_sharding(mesh))
  new, metrics = step(state, batch)
  return _host(new), _host(metrics)


@pytest.fixture(scope='module')
def start(uncond_run):
  """A trained state (24 steps) and a batch of the tiny dataset."""
  _, state = uncond_run
  config = _config()
  source = pipeline.random_smooth_source(64, 16, seed=config.seed)
  batch = next(pipeline.make_loader(source, global_batch_size=8, seed=5, shard_index=0,
                                    shard_count=1))
  return state, batch


def _perturbed_state(config, mesh, seed=0):
  """The step-0 state with every param moved by N(0, 0.05^2), on the host.

  The authors' init zeroes every ResBlock's out conv and the head, so at step 0 only the head
  has a gradient; moved params give every leaf one.
  """
  _, _, create = train.make_initial_state(config, checkpoint.make_model(config), mesh)
  state = _host(create())
  rng = np.random.default_rng(seed)
  return state.replace(params=jax.tree.map(
      lambda p: p + 0.05 * rng.standard_normal(p.shape).astype(p.dtype), state.params))


@pytest.fixture(scope='module')
def micro_start():
  """The micro network's state after one 1-device step (so Adam's moments and the EMAs are
  not their step-0 values), and the next batch of the tiny dataset."""
  config = _config(size='micro')
  one = parallel.make_mesh(jax.devices()[:1])
  source = pipeline.random_smooth_source(64, 16, seed=config.seed)
  batches = pipeline.make_loader(source, global_batch_size=8, seed=5, shard_index=0,
                                 shard_count=1)
  state, _ = _one_step(config, one, _perturbed_state(config, one), next(batches))
  return state, next(batches)


def _check_same_step(state, batch, runs, base):
  """One step of each (config, mesh) of `runs` from `state` on `batch` matches the 1-device
  step of config `base`."""
  one = parallel.make_mesh(jax.devices()[:1])
  ref, ref_metrics = _one_step(base, one, state, batch)
  assert ref_metrics['finite'] == 1
  for name, (config, mesh) in runs.items():
    new, metrics = _one_step(config, mesh, state, batch)
    # Same draws, same data: only the order of float sums differs (measured on the micro
    # network: loss and gradient norm within 2.4e-7).
    np.testing.assert_allclose(metrics['loss'], ref_metrics['loss'], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(metrics['grad_norm'], ref_metrics['grad_norm'], rtol=1e-5,
                               err_msg=name)
    # Per leaf, relative to its largest value: a wrong or missing update (lr 1e-3 on
    # params of scale 0.01-1) would be 1e-3 off; float reordering is at most 1.4e-6 (measured:
    # params 1.4e-6, EMAs 1.2e-6, Adam's moments 9e-7).
    for what in ('params', 'ema', 'opt_state'):
      for a, b in zip(jax.tree.leaves(getattr(ref, what)), jax.tree.leaves(getattr(new, what))):
        scale = max(float(np.abs(a).max()), 1e-30)
        assert float(np.abs(a - b).max()) <= 1e-5 * scale, (name, what)


# The layout tests use tiny_uncond's 'micro' UNet: the layouts' steps differ in their sharding and
# collectives, not in the network, and each layout is one more compilation of the step.


def test_the_step_is_the_same_on_1_device_8_devices_and_with_fsdp(micro_start):
  eight = parallel.make_mesh()
  fsdp = {'parallel.fsdp': True, 'parallel.fsdp_min_size': 0}
  _check_same_step(*micro_start, {
      '8 devices': (_config(size='micro'), eight),
      '8 devices, FSDP': (_config('uncond', 'micro', **fsdp), eight),
  }, _config(size='micro'))


def test_accumulating_two_micro_batches_is_the_full_batch_step(micro_start):
  one = parallel.make_mesh(jax.devices()[:1])
  accumulating = _config('uncond', 'micro', **{'optim.grad_accum_steps': 2})
  _check_same_step(*micro_start, {'1 device, 2 micro-batches': (accumulating, one)},
                   _config(size='micro'))


def test_the_cond_step_builds_its_pair_on_device_and_trains_all_10_channels():
  # G_c's step on the 8 devices: the warp (shard_map over the batch) makes each example's
  # condition from its x0, camera and key, and the network reads it in channels 4..9.
  config = _config('cond', 'micro')
  mesh = parallel.make_mesh()
  state = _perturbed_state(config, mesh)
  source = pipeline.random_smooth_source(64, 16, seed=config.seed)
  batch = next(pipeline.make_loader(source, global_batch_size=8, seed=5, shard_index=0,
                                    shard_count=1, conditional=True))
  assert batch['camera']['yaw'].shape == (8,) and batch['rng'].shape == (8, 2)
  new, metrics = _one_step(config, mesh, state, batch)
  assert metrics['finite'] == 1 and int(new.step) == int(state.step) + 1
  # eps-MSE of a random network whose output is small: about 1 (measured 1.04).
  assert 0.5 < float(metrics['loss']) < 2.0, metrics['loss']
  first = new.params['input_blocks_0_0']['kernel']
  before = state.params['input_blocks_0_0']['kernel']
  assert first.shape == (3, 3, 10, 8)
  # Adam's first update moves every weight with a nonzero gradient by lr (1e-3) times
  # |g| / (|g| + 1e-8): the condition's channels (y, mask, mask_rgb) reached the loss
  # (measured: every one of them moved by 0.99999e-3 or more).
  moved = np.abs(first - before)[:, :, 4:]
  assert moved.min() > 0.9e-3, moved.min()


def test_fsdp_shards_params_optimiser_state_and_ema():
  config = _config(**{'parallel.fsdp': True, 'parallel.fsdp_min_size': 0})
  model = checkpoint.make_model(config)
  abstract, shardings, _ = train.make_initial_state(config, model, parallel.make_mesh())
  kernel = shardings.params['input_blocks_1_0']['in_conv']['kernel']
  assert kernel.spec == jax.sharding.PartitionSpec(None, None, None, 'data')  # HWIO, O = 16
  assert shardings.ema[0]['input_blocks_1_0']['in_conv']['kernel'].spec == kernel.spec
  mu = shardings.opt_state[0][0].mu['input_blocks_1_0']['in_conv']['kernel']  # chain(adamw)
  assert mu.spec == kernel.spec
  assert shardings.step.spec == jax.sharding.PartitionSpec()
  del abstract


def test_a_nonfinite_batch_skips_the_update_and_the_run_stops_after_n(start):
  state, batch = start
  mesh = parallel.make_mesh()
  bad = dict(batch, x0=np.where(np.arange(16)[None, :, None, None] == 3, np.nan, batch['x0']))
  new, metrics = _one_step(_config(), mesh, state, bad)
  assert metrics['finite'] == 0 and np.isnan(metrics['loss'])
  assert int(new.step) == int(state.step) + 1
  assert int(new.nonfinite) == 1 and int(new.nonfinite_run) == 1
  for what in ('params', 'opt_state', 'ema'):
    for a, b in zip(jax.tree.leaves(getattr(state, what)), jax.tree.leaves(getattr(new, what))):
      np.testing.assert_array_equal(a, b, err_msg=what)
  again, metrics = _one_step(_config(), mesh, new, bad)
  assert int(metrics['nonfinite_run']) == 2
  with pytest.raises(train.NonFiniteError, match=r'2 consecutive steps \(25..26\).*step 24'):
    train._check_nonfinite(metrics, 26, limit=2, last_saved=24)
  good, metrics = _one_step(_config(), mesh, again, batch)
  assert int(metrics['nonfinite_run']) == 0 and int(good.nonfinite) == 2
  assert not np.array_equal(good.params['out_2']['kernel'], state.params['out_2']['kernel'])


def test_config_errors_name_the_field():
  with pytest.raises(ValueError, match='model.in_channels'):
    train.check_config(_config('cond', **{'model.in_channels': 4}))
  with pytest.raises(ValueError, match='has_null_class'):
    train.check_config(_config(**{'model.has_null_class': False}))
  with pytest.raises(ValueError, match='image_dropout applies to the cond'):
    train.check_config(_config(**{'diffusion.image_dropout': 0.1}))
