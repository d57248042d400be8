"""The FID Inception v3 in flax.linen: torch-fidelity's `inception-v3-compat` (reference 8).

The network is the TensorFlow 2015-12-05 Inception graph that FID, KID and IS
are defined on, as torch-fidelity (the authors' eval.py) and pytorch-fid port
it: torchvision's Inception v3 with the TF patches (average pools that do not
count padding, a max pool in the last block, BatchNorm eps 1e-3, 1008 logits).
Input images of any size are resized to 299 x 299 with TensorFlow 1.x's
bilinear resize (no half-pixel offset, `interpolate_bilinear_2d_like_tensorflow1x`
'slow'), then mapped to [-1, 1] by (x - 128) / 128, exactly as torch-fidelity
does, so the features, and FID computed on them, are comparable with the paper's.

Weights: `pt_inception-2015-12-05-6726825d.pth` (pytorch-fid's file; torch-fidelity's
`weights-inception-2015-12-05-6726825d.pth` has the same tensors under the same
names). Nothing here downloads: `load_params` reads a local .pth (with torch)
or an .npz of the same tensors under the same names. Parameter names mirror
the state_dict (`Mixed_5b.branch1x1.conv.weight` is
params['Mixed_5b']['branch1x1']['conv']['kernel']).

Every convolution and the final matmul run at `Precision.HIGHEST`: on TPU the
default float32 precision is bfloat16 passes and on recent GPUs TF32, either
of which moves FID by more than the differences it is used to rank.
"""

from __future__ import annotations

import collections
import functools
import os
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax import Array
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

INPUT_SIZE = 299
POOL_DIM = 2048
NUM_LOGITS = 1008
WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URLS = (
    'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
    'pt_inception-2015-12-05-6726825d.pth',
    'https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/'
    'weights-inception-2015-12-05-6726825d.pth',
)
FEATURES = ('pool', 'logits_unbiased')  # FID/KID use pool, IS logits_unbiased

_BN_EPS = 1e-3  # TF's; torch-fidelity's BasicConv2d sets it too
_HIGHEST = jax.lax.Precision.HIGHEST

Variables = dict[str, Any]  # {'params': ..., 'batch_stats': ...}


class BasicConv(nn.Module):
  """Conv (no bias) -> BatchNorm (running statistics) -> ReLU."""
  features: int
  kernel_size: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = nn.Conv(self.features, self.kernel_size, strides=self.strides,
                padding=[(p, p) for p in self.padding], use_bias=False, precision=_HIGHEST,
                name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, name='bn')(x)
    return nn.relu(x)


def _avg_pool_same(x: Array) -> Array:
  # TF's average pool divides by the number of real (unpadded) inputs.
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_valid(x: Array) -> Array:
  return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b1 = BasicConv(64, (1, 1), name='branch1x1')(x)
    b5 = BasicConv(48, (1, 1), name='branch5x5_1')(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = BasicConv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = BasicConv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b3 = BasicConv(384, (3, 3), strides=2, name='branch3x3')(x)
    bd = BasicConv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = BasicConv(96, (3, 3), strides=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_valid(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c7 = self.channels_7x7
    b1 = BasicConv(192, (1, 1), name='branch1x1')(x)
    b7 = BasicConv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = BasicConv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = BasicConv(192, (1, 1), name='branch_pool')(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b3 = BasicConv(192, (1, 1), name='branch3x3_1')(x)
    b3 = BasicConv(320, (3, 3), strides=2, name='branch3x3_2')(b3)
    b7 = BasicConv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv(192, (3, 3), strides=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_valid(x)], axis=-1)


class InceptionE(nn.Module):
  max_pool: bool  # the last block of the TF graph pools with max, not average

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b1 = BasicConv(320, (1, 1), name='branch1x1')(x)
    b3 = BasicConv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
                          BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)], -1)
    bd = BasicConv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
                          BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)], -1)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_same(x)
    bp = BasicConv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class _Logits(nn.Module):
  """The 2048 -> 1008 layer; IS uses its output without the bias (torch-fidelity's choice)."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (x.shape[-1], NUM_LOGITS))
    self.param('bias', nn.initializers.zeros, (NUM_LOGITS,))  # loaded and checked, unused
    return jnp.dot(x, kernel, precision=_HIGHEST)


class InceptionV3(nn.Module):
  """The FID Inception: x float32 [B, 299, 299, 3] in [-1, 1] -> {'pool', 'logits_unbiased'}."""

  @nn.compact
  def __call__(self, x: Array) -> dict[str, Array]:
    x = BasicConv(32, (3, 3), strides=2, name='Conv2d_1a_3x3')(x)
    x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_valid(x)
    x = BasicConv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_valid(x)
    assert x.shape[1:] == (35, 35, 192), x.shape
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c7, name=name)(x)
    assert x.shape[1:] == (17, 17, 768), x.shape
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(max_pool=False, name='Mixed_7b')(x)
    x = InceptionE(max_pool=True, name='Mixed_7c')(x)
    assert x.shape[1:] == (8, 8, POOL_DIM), x.shape
    pool = jnp.mean(x, axis=(1, 2))
    return {'pool': pool, 'logits_unbiased': _Logits(name='fc')(pool)}


@functools.partial(jax.jit, static_argnames=('size',))
def resize_bilinear_tf1(images: Array, size: int = INPUT_SIZE) -> Array:
  """TensorFlow 1.x bilinear resize (align_corners=False, no half-pixel centres).

  torch-fidelity's `interpolate_bilinear_2d_like_tensorflow1x(method='slow')`,
  operation for operation: source coordinate = out index x (in / out) in
  float32, the two neighbours (the upper one clamped), a lerp along x then y.

  Args:
    images: float32 [B, H, W, C].
    size: output side.

  Returns:
    float32 [B, size, size, C].
  """
  images = jnp.asarray(images, jnp.float32)

  def taps(n_in: int) -> tuple[Array, Array, Array]:
    x = jnp.arange(size, dtype=jnp.float32) * jnp.float32(n_in / size)
    lo = x.astype(jnp.int32)  # truncation = floor, x >= 0
    return lo, jnp.minimum(lo + 1, n_in - 1), x - lo.astype(jnp.float32)

  y_lo, y_hi, dy = taps(images.shape[1])
  x_lo, x_hi, dx = taps(images.shape[2])
  top, bottom = images[:, y_lo], images[:, y_hi]
  dx = dx[None, None, :, None]
  row_top = top[:, :, x_lo] + (top[:, :, x_hi] - top[:, :, x_lo]) * dx
  row_bottom = bottom[:, :, x_lo] + (bottom[:, :, x_hi] - bottom[:, :, x_lo]) * dx
  return row_top + (row_bottom - row_top) * dy[None, :, None, None]


@jax.jit
def preprocess(images: Array) -> Array:
  """uint8 [B, H, W, 3] -> float32 [B, 299, 299, 3] in [-1, 1], as torch-fidelity feeds the net."""
  return (resize_bilinear_tf1(images.astype(jnp.float32)) - 128.0) / 128.0


# Traces of the network per input shape, for tests that guard against recompiles.
TRACES: collections.Counter = collections.Counter()


@jax.jit
def network(variables: Variables, x: Array) -> dict[str, Array]:
  """Features of preprocessed inputs x float32 [B, 299, 299, 3] (`preprocess`); compiled per B."""
  TRACES[x.shape] += 1
  return InceptionV3().apply(variables, x)


@functools.lru_cache(maxsize=1)
def abstract_variables() -> Variables:
  """Shapes and dtypes of the variables (no computation; traced once, then cached)."""
  x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
  return jax.eval_shape(InceptionV3().init, jax.random.key(0), x)


def _torch_to_path(key: str) -> tuple[str, ...] | None:
  """A state_dict key -> (collection, *module path, name); None for buffers we do not use."""
  *modules, leaf = key.split('.')
  if leaf == 'num_batches_tracked':
    return None
  if modules == ['fc']:
    return ('params', 'fc', {'weight': 'kernel', 'bias': 'bias'}.get(leaf, leaf))
  if modules and modules[-1] == 'conv' and leaf == 'weight':
    return ('params', *modules, 'kernel')
  if modules and modules[-1] == 'bn':
    collection, name = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
                        'running_mean': ('batch_stats', 'mean'),
                        'running_var': ('batch_stats', 'var')}.get(leaf, (None, leaf))
    if collection is not None:
      return (collection, *modules, name)
  return ('unknown', key)


def _to_flax(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
  if path[-1] == 'kernel' and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if path[-1] == 'kernel' and value.ndim == 2:
    return value.T  # [out, in] -> [in, out]
  return value


def params_from_state_dict(state_dict: dict[str, np.ndarray], *, source: str = 'state_dict'
                           ) -> Variables:
  """The FID Inception's PyTorch state_dict -> Flax variables; every tensor must map.

  Args:
    state_dict: name -> array (OIHW convolutions, [out, in] fc), any float dtype.
    source: named in errors.

  Returns:
    {'params', 'batch_stats'} float32, the layout of `abstract_variables()`.
  """
  expected = {'/'.join(p): s for p, s in _flat(abstract_variables()).items()}
  found, errors, unexpected = {}, [], []
  for key, value in state_dict.items():
    path = _torch_to_path(key)
    if path is None:
      continue
    name = '/'.join(path)
    if name not in expected:
      unexpected.append(key)
      continue
    value = _to_flax(path, np.asarray(value, np.float32))
    if value.shape != expected[name].shape:
      errors.append(f'{key}: shape {value.shape} (as Flax) but the network needs '
                    f'{expected[name].shape}')
    found[name] = value
  missing = sorted(set(expected) - set(found))
  if unexpected:
    errors.append(f'unexpected tensors {sorted(unexpected)}')
  if missing:
    errors.append(f'missing tensors {missing}')
  if errors:
    raise ValueError(f'{source}: not the FID Inception v3 ({WEIGHTS_FILE}): ' + '; '.join(errors))
  variables: dict = {}
  for name, value in found.items():
    node = variables
    *parents, leaf = name.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return variables


def random_state_dict(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
  """Random weights under the .pth's names, drawn so that activations stay O(1) through the net.

  Used for testing only: no pretrained file exists on the test machines, so the
  parity test and `tests/data/make_inception_ref.py` (which feeds them to
  torch-fidelity) draw the same weights. numpy's legacy RandomState stream is
  frozen across numpy versions; each tensor has its own seed from its name.

  Args:
    layout: state_dict name -> shape.
    seed: global seed.

  Returns:
    name -> float32 array (int64 0 for `num_batches_tracked`).
  """
  out = {}
  for name, shape in layout.items():
    rng = np.random.RandomState((seed + zlib.crc32(name.encode())) % 2**32)
    leaf = name.rsplit('.', 1)[-1]
    if leaf == 'num_batches_tracked':
      out[name] = np.zeros(shape, np.int64)
      continue
    if name.endswith('conv.weight'):  # He init keeps the ReLU stack's scale
      value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
    elif name == 'fc.weight':
      value = rng.standard_normal(shape) / np.sqrt(shape[1])
    elif leaf in ('weight', 'running_var'):
      value = rng.uniform(0.5, 1.5, shape)
    else:  # BatchNorm bias and running_mean, fc bias
      value = 0.1 * rng.standard_normal(shape)
    out[name] = value.astype(np.float32)
  return out


def _flat(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, prefix + (k,)))
    return out
  return {prefix: tree}


def load_params(path: str | os.PathLike) -> Variables:
  """Reads the FID Inception weights: a .pth (needs torch) or an .npz of the same tensors.

  Args:
    path: `pt_inception-2015-12-05-6726825d.pth` (or torch-fidelity's copy), or an
      .npz whose keys are the state_dict's names (float16 or float32).

  Returns:
    Flax variables {'params', 'batch_stats'}, float32, on the host.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{path}: no such file. The FID Inception weights are not downloaded by ivid-jax; fetch '
        f'{WEIGHTS_FILE} once ({WEIGHTS_URLS[0]}, or torch-fidelity\'s identical '
        f'{WEIGHTS_URLS[1]}) and pass its path.')
  from ivid_jax.models import convert  # pylint: disable=g-import-not-at-top
  return params_from_state_dict(convert.read_state_dict(path), source=path)


def local_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over this process's devices; features run data-parallel over it."""
  return jax.sharding.Mesh(np.asarray(jax.local_devices()), ('data',))


def shard_batch(x: np.ndarray | Array, mesh: jax.sharding.Mesh | None = None) -> Array:
  """Splits a batch over the mesh's devices (its size must divide the batch)."""
  return jax.device_put(x, NamedSharding(mesh or local_mesh(), P('data')))


def round_batch_size(batch_size: int, mesh: jax.sharding.Mesh | None = None) -> int:
  """The batch size rounded up to a multiple of the device count."""
  n = (mesh or local_mesh()).size
  return max(n, -(-batch_size // n) * n)


def replicate(variables: Variables, mesh: jax.sharding.Mesh | None = None) -> Variables:
  """The variables on every device of the mesh (as `extract` places them)."""
  return jax.device_put(variables, NamedSharding(mesh or local_mesh(), P()))


def _batches(images: Iterable[np.ndarray], batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
  """Regroups a stream of uint8 [b, H, W, 3] chunks into [batch_size, H, W, 3] (zero-padded)."""
  buffer, count, shape = [], 0, None
  for chunk in images:
    chunk = np.asarray(chunk)
    if chunk.dtype != np.uint8 or chunk.ndim != 4 or chunk.shape[-1] != 3:
      raise ValueError(f'images must be uint8 [N, H, W, 3], got {chunk.dtype} {chunk.shape}')
    if shape is not None and chunk.shape[1:] != shape:
      raise ValueError(f'all images of one call must share a size: {shape[:2]} then '
                       f'{chunk.shape[1:3]} (resize them first: image_sets.center_crop_resize)')
    shape = chunk.shape[1:]
    buffer.append(chunk)
    count += len(chunk)
    while count >= batch_size:
      joined = np.concatenate(buffer)
      yield joined[:batch_size], batch_size
      buffer, count = [joined[batch_size:]], count - batch_size
  if count:
    joined = np.concatenate(buffer)
    pad = np.zeros((batch_size - count,) + joined.shape[1:], np.uint8)
    yield np.concatenate([joined, pad]), count


def extract(variables: Variables, images: Iterable[np.ndarray], *, batch_size: int = 250,
            total: int | None = None, progress: bool = True, desc: str = 'Inception'
            ) -> dict[str, np.ndarray]:
  """Features of a stream of image chunks, batched and data-parallel over the local devices.

  Each batch is split over the devices; the network is compiled once per batch
  size (the last batch is zero-padded, padded rows dropped), the TF1 resize once
  per input size. Host reading of the next chunk overlaps the device's work on
  the current batch (dispatch is asynchronous; results are fetched one batch late).
  Each process uses its own devices: on a multi-host pod, run it on one host
  (or give each host its share of the images and concatenate the features).

  Args:
    variables: from `load_params`.
    images: iterable of uint8 [b, H, W, 3] chunks of one size (any b).
    batch_size: images per step over all devices (rounded up to a multiple of
      the device count).
    total: number of images, for the progress bar.
    progress: show a tqdm bar.

  Returns:
    {'pool': float32 [N, 2048], 'logits_unbiased': float32 [N, 1008]}.
  """
  mesh = local_mesh()
  batch_size = round_batch_size(batch_size, mesh)
  variables = replicate(variables, mesh)
  out: dict[str, list[np.ndarray]] = {k: [] for k in FEATURES}
  pending = None

  def collect(result, count):
    for k in FEATURES:
      out[k].append(np.asarray(result[k][:count], np.float32))

  with tqdm.tqdm(total=total, desc=desc, unit='img', disable=not progress) as bar:
    for batch, count in _batches(images, batch_size):
      result = network(variables, preprocess(shard_batch(batch, mesh)))
      if pending is not None:
        collect(*pending)
      pending = (result, count)
      bar.update(count)
    if pending is not None:
      collect(*pending)
  if not out['pool']:
    raise ValueError('no images to compute Inception features of')
  return {k: np.concatenate(v) for k, v in out.items()}


def features(variables: Variables, images: np.ndarray, *, batch_size: int = 250,
             progress: bool = False) -> dict[str, np.ndarray]:
  """Inception features of uint8 [N, H, W, 3] images (any H, W; resized to 299 as torch-fidelity).

  Returns:
    {'pool': float32 [N, 2048], 'logits_unbiased': float32 [N, 1008]}.
  """
  images = np.asarray(images)
  return extract(variables, [images], batch_size=batch_size, total=len(images),
                 progress=progress)
