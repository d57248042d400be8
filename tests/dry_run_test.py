"""`ivid-jax train --dry_run` at the authors' full size: ImageNet-128 G_c over 8 simulated devices.

Each dry run is the command in a subprocess (`--dry_run_devices=8` must be set
before JAX starts, and a 421.5M-parameter compile is best kept out of the test
process), which writes its figures with --dry_run_json. The checks are what
`training/parallel.py` documents: FSDP leaves about 1/8 of the params,
optimiser state and EMA on each device, replication all of it; data
parallelism all-reduces the gradients; FSDP all-gathers the params and
reduce-scatters the gradients (on XLA:CPU an all-reduce of the same bytes,
then a slice: the CPU compiler has no reduce-scatter).
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_DEVICES = 8
# The authors' G_c: ADM at 128 px, 256 channels, 10 input channels (reference 3.3).
GC_PARAMS_MILLIONS = 421.5
F32 = 4
# FSDP keeps leaves under 2^16 elements (biases, norms) and leaves with no axis divisible by 8
# replicated: for this network that is well under 1% of the bytes.
PADDING = 0.01
MIB = 2 ** 20


def _dry_run(tmp_path, fsdp: bool) -> dict:
  run_dir = tmp_path / f'fsdp_{fsdp}'
  run_dir.mkdir()
  out = run_dir / 'dry_run.json'
  cmd = [sys.executable, '-m', 'ivid_jax.main', 'train',
         f'--config={os.path.join(ROOT, "configs", "imagenet128_cond.py")}',
         f'--config.parallel.fsdp={fsdp}', '--dry_run', f'--dry_run_devices={NUM_DEVICES}',
         f'--dry_run_json={out}']
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False,
                          cwd=run_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'DRY RUN' in result.stdout
  assert os.listdir(run_dir) == ['dry_run.json']  # nothing but the JSON asked for
  return json.loads(out.read_text())['train'][0]


@pytest.fixture(scope='module')
def reports(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('dry_run')
  return {fsdp: _dry_run(tmp, fsdp) for fsdp in (True, False)}


@pytest.mark.slow
def test_full_size_network_and_batch(reports):
  for r in reports.values():
    assert round(r['num_params'] / 1e6, 1) == GC_PARAMS_MILLIONS
    assert r['num_devices'] == NUM_DEVICES and r['platform'] == 'cpu'
    assert (r['per_device_batch'], r['global_batch']) == (16, 16 * NUM_DEVICES)
    # One float32 copy of the params; AdamW's two moments; one EMA (decay 0.9999).
    assert r['params_total_bytes'] == F32 * r['num_params']
    assert 2 * r['params_total_bytes'] <= r['opt_total_bytes'] <= 2 * r['params_total_bytes'] + 64
    assert r['ema_total_bytes'] == r['params_total_bytes']


@pytest.mark.slow
def test_fsdp_holds_an_eighth_of_the_state_per_device(reports):
  r = reports[True]
  for part in ('params', 'opt', 'ema'):
    share = r[f'{part}_bytes'] / r[f'{part}_total_bytes']
    assert 1 / NUM_DEVICES <= share <= 1 / NUM_DEVICES + PADDING, (part, share)


@pytest.mark.slow
def test_replicated_step_holds_all_the_state_per_device(reports):
  r = reports[False]
  for part in ('params', 'opt', 'ema'):
    assert r[f'{part}_bytes'] == r[f'{part}_total_bytes'], part


@pytest.mark.slow
def test_compiled_arguments_are_the_sharded_state_and_the_batch_shard(reports):
  # The compiled program's inputs on one device: its state shards plus its 16 examples
  # (x0 float32 [16, 128, 128, 4] = 4 MiB, and the small label / camera / key fields).
  for r in reports.values():
    state = r['params_bytes'] + r['opt_bytes'] + r['ema_bytes']
    batch = 16 * 128 * 128 * 4 * F32
    args = r['compiled']['argument_bytes']
    assert state + batch <= args <= state + batch + MIB, (r['fsdp'], args - state - batch)
    # The state is donated: the new state reuses its buffers.
    assert r['compiled']['alias_bytes'] >= state


@pytest.mark.slow
def test_replicated_step_all_reduces_the_gradients(reports):
  c = reports[False]['compiled']['collectives']
  params = reports[False]['params_total_bytes']
  assert params <= c['all-reduce']['bytes'] <= params * (1 + PADDING)
  assert c['all-gather']['bytes'] == 0
  assert c['reduce-scatter']['bytes'] == 0


@pytest.mark.slow
def test_fsdp_step_gathers_params_and_reduce_scatters_gradients(reports):
  c = reports[True]['compiled']['collectives']
  params = reports[True]['params_total_bytes']
  # Every sharded leaf is gathered once for the forward and backward passes.
  assert params * (1 - PADDING) <= c['all-gather']['bytes'] <= params
  # The gradients: reduce-scattered (XLA:CPU: all-reduced, then sliced) once. All but one:
  # the class embedding's gradient (1001 x 1024 float32, 0.24% of the bytes) is a scatter-add
  # of per-example rows, which the partitioner sends to the rows' shards with an all-to-all
  # (label_emb's scatter-add in the HLO) instead of reducing the whole table.
  reduced = c['reduce-scatter']['bytes'] + c['all-reduce']['bytes']
  assert params * (1 - PADDING) <= reduced <= params * (1 + PADDING)


@pytest.mark.slow
def test_other_collectives_are_negligible(reports):
  # The class embedding's gradient rows (FSDP, above): a few KiB.
  for r in reports.values():
    c = r['compiled']['collectives']
    assert c['all-to-all']['bytes'] + c['collective-permute']['bytes'] < MIB


@pytest.mark.slow
def test_sampler_dry_run_counts_both_networks_steps_of_a_scene():
  # In-process, tiny networks (16 px), 8 simulated devices (conftest): one scene per device.
  # Compiling the whole chain takes about two minutes on 2 busy cores, hence slow.
  from ivid_jax.sampling import dry_run as sample_dry_run  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from ivid_jax.training import checkpoint  # pylint: disable=g-import-not-at-top
  configs = os.path.join(ROOT, 'configs')
  r = sample_dry_run.dry_run(os.path.join(configs, 'tiny_uncond.py'),
                             os.path.join(configs, 'tiny_cond.py'), viewset='orbit:3',
                             batch_size=8)
  assert (r.num_devices, r.scenes_per_device, r.num_views) == (8, 1, 3)
  # The tiny configs' sampling steps: G_u's diffusion.steps, G_c's.
  u_cfg = sample_dry_run.load_config(os.path.join(configs, 'tiny_uncond.py'))
  c_cfg = sample_dry_run.load_config(os.path.join(configs, 'tiny_cond.py'))
  assert (r.steps_uncond, r.steps_cond) == (u_cfg.diffusion.steps, c_cfg.diffusion.steps)
  # A guided step is one forward pass of twice the batch: about twice one plain forward,
  # compiled here on its own.
  t = jax.ShapeDtypeStruct((1,), jnp.int32)

  def plain_forward(config):
    model = checkpoint.make_model(config)
    x = jax.ShapeDtypeStruct((1, 16, 16, model.in_channels), jnp.float32)
    return jax.jit(lambda p, x, t: model.apply({'params': p}, x, t, t)).lower(
        checkpoint.abstract_params(model), x, t).compile().cost_analysis()['flops']

  plain_u, plain_c = plain_forward(u_cfg), plain_forward(c_cfg)
  assert 1.9 * plain_u <= r.uncond_step.flops <= 2.2 * plain_u
  assert 1.9 * plain_c <= r.cond_step.flops <= 2.2 * plain_c
  # A scene: view 0's steps of G_u, then two further views' steps of G_c, guided.
  forwards = r.steps_uncond * plain_u + 2 * r.steps_cond * plain_c
  assert 1.9 * forwards <= r.flops_per_scene <= 2.2 * forwards
  # Every device holds both networks' float32 weights.
  assert r.chain.argument_bytes >= 4 * (r.uncond_params + r.cond_params)


def test_simulated_devices_need_a_dry_run(tmp_path):
  # Otherwise `train` would train on N simulated CPU devices.
  cmd = [sys.executable, '-m', 'ivid_jax.main', 'train',
         f'--config={os.path.join(ROOT, "configs", "tiny_uncond.py")}',
         f'--workdir={tmp_path / "run"}', '--dry_run_devices=2']
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode != 0
  assert '--dry_run_devices and --dry_run_json need --dry_run' in result.stderr
  assert not (tmp_path / 'run').exists()
