"""Test set-up: 8 simulated CPU devices and the reference data of the authors' code."""

import os

# Must happen before JAX initialises its backends.
# Appended, so that flags a user exports (the README's CPU flag, say) are kept.
_DEVICES = '--xla_force_host_platform_device_count=8'
if _DEVICES not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_DEVICES}".strip()
# LLVM's optimisation passes are most of an XLA:CPU compilation, and the suite compiles far
# more than it runs (tiny networks, a few steps): without them the suite takes about a quarter
# less time (888 s -> 669 s on 2 cores, with another change; one compile-bound test 44 s -> 27 s). The programs compute the same functions (XLA:CPU uses no fast-math either way); what
# is timed is timed by benchmarks/, outside pytest, with XLA's default. A user's own setting of
# the flag is kept.
if '--xla_backend_optimization_level' not in os.environ['XLA_FLAGS']:
  os.environ['XLA_FLAGS'] += ' --xla_backend_optimization_level=0'
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import atexit  # pylint: disable=g-import-not-at-top
import shutil  # pylint: disable=g-import-not-at-top
import tempfile  # pylint: disable=g-import-not-at-top

# One persistent compilation cache per test process, shared with the command-line tests'
# subprocesses (they inherit the environment): XLA:CPU compilation is most of the suite's time,
# and the commands compile the programs the in-process tests already compiled. pytest-xdist's
# workers inherit the controller's environment: each gets its own folder under one base, since
# JAX writes cache entries without a lock and a worker could read another's half-written file.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ or '_IVID_JAX_TEST_CACHE' in os.environ:
  if '_IVID_JAX_TEST_CACHE' not in os.environ:
    os.environ['_IVID_JAX_TEST_CACHE'] = tempfile.mkdtemp(prefix='ivid_jax_test_jit_cache_')
    atexit.register(shutil.rmtree, os.environ['_IVID_JAX_TEST_CACHE'], ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.join(
      os.environ['_IVID_JAX_TEST_CACHE'], os.environ.get('PYTEST_XDIST_WORKER', 'main'))
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

DATA = os.path.join(os.path.dirname(__file__), 'data')


@pytest.fixture(scope='session')
def fbwarp_ref():
  """The authors' forward-backward warps of six cases (tests/data/README.md)."""
  return dict(np.load(os.path.join(DATA, 'fbwarp_public_ref.npz')))


@pytest.fixture(scope='session')
def aggregate_ref():
  """The authors' 9-view chain and aggregated conditions (tests/data/README.md)."""
  return dict(np.load(os.path.join(DATA, 'aggregate_public_ref.npz')))


@pytest.fixture(autouse=True)
def _temp_files_in_tmp_path(tmp_path, monkeypatch):
  """TFDS's DatasetInfo.initialize_from_bucket leaves an empty mkdtemp() per builder: keep them in tmp_path."""
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))


# Tiny random networks for the sampler (16 px; the UNet's own test configuration).
TINY_UNET = dict(image_size=16, in_channels=4, model_channels=16, out_channels=4,
                 num_res_blocks=1, attention_resolutions=(8,), channel_mult=(1, 2), num_groups=8,
                 num_head_channels=8, num_classes=4, has_null_class=True)


def random_model_file(path, fields: dict, seed: int, **meta) -> str:
  """A model file of UNet(**fields) with params drawn with numpy (no init compiled).

  The output convolution is scaled down so that the random eps stay O(1) and the
  chain's views O(1) rather than O(100) (every view is still noise-like).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from ivid_jax.models import model_file  # pylint: disable=g-import-not-at-top
  from ivid_jax.models import unet  # pylint: disable=g-import-not-at-top
  net = unet.UNet(**fields)
  s, c = fields['image_size'], fields['in_channels']
  shapes = jax.eval_shape(lambda: net.init(
      jax.random.key(0), np.zeros((1, s, s, c), np.float32), np.zeros((1,), np.int32),
      np.zeros((1,), np.int32)))['params']
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if len(leaf.shape) == 1:
      return (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
    scale = 1.0 / np.sqrt(np.prod(leaf.shape[:-1]))
    if 'out_2' in jax.tree_util.keystr(path):
      scale *= 0.1
    return (scale * rng.standard_normal(leaf.shape)).astype(np.float32)

  params = jax.tree_util.tree_map_with_path(draw, shapes)
  return model_file.save(path, unet=fields, params=params, **meta)


@pytest.fixture(scope='session')
def tiny_model_files(tmp_path_factory):
  """{'uncond': path, 'cond': path}: model files of tiny random UNets (random_model_file)."""
  folder = tmp_path_factory.mktemp('tiny_models')
  return {kind: random_model_file(folder / f'{kind}.msgpack', dict(TINY_UNET, in_channels=c),
                                  seed)
          for seed, (kind, c) in enumerate((('uncond', 4), ('cond', 10)))}


@pytest.fixture(scope='session')
def tiny_synthetic_model_files(tmp_path_factory):
  """{'uncond': path, 'cond': path}: tiny random UNets (16 px) with synthetic_rgbd's 5 classes.

  Stored with the provenance `ivid-jax export` writes for the synthetic configs
  (trained on r<RES>_solid), so the demo treats them as the shipped networks.
  """
  folder = tmp_path_factory.mktemp('tiny_synthetic_models')
  return {kind: random_model_file(folder / f'synthetic_{kind}.msgpack',
                                  dict(TINY_UNET, in_channels=c, num_classes=5), seed, kind=kind,
                                  config={'input': {'tfds_config': 'r32_solid'}})
          for seed, (kind, c) in enumerate((('uncond', 4), ('cond', 10)))}


# The modules that take longest on 2 cores (their tests' total time in a `--durations=0` run),
# longest first. pytest-xdist hands whole modules to its workers as they free up (--dist
# loadfile, with --no-loadscope-reorder in pytest.ini): starting with the longest and ending with
# the short ones keeps the two workers busy until the end, instead of one waiting for a long
# module that happened to be handed out last. A missing or extra name only changes the order.
_LONGEST_FIRST = ('train_test', 'demo_test', 'warp_test', 'chain_test', 'parallel_test',
                  'checkpoint_test', 'unet_test',
                  'sample_render_commands_test', 'eval_commands_test', 'notebooks_test',
                  'consistency_test', 'diffusion_test', 'convert_test', 'raster_test',
                  'fusion_test', 'fused_test', 'render_test', 'data_end_to_end_test',
                  'image_test', 'main_test', 'conditional_test', 'inception_test')


def pytest_collection_modifyitems(config, items):
  del config
  rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
  module = lambda item: os.path.splitext(os.path.basename(item.fspath))[0]
  items.sort(key=lambda item: rank.get(module(item), len(rank)))  # stable: file order kept
