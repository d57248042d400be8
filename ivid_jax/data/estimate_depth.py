"""Monocular depth for an image folder or a TFDS dataset, written in the authors' format.

  ivid-jax estimate-depth --images=ROOT/images --out=ROOT/depths --model=Intel/dpt-beit-large-512

Output (reference 1.1): for each image `images/<rel>.<ext>` a file `depths/<rel>.npz` holding one
unnamed fp16 array (key `arr_0`) of relative inverse depth [H, W] at the image's resolution,
larger = nearer. The loader (`preprocess.scale_disparity`) divides it by 6250 and rescales a map
whose maximum then exceeds 2 to a maximum of exactly 2 (nearest point at depth 0.5).

Scales (`depth_scale`):
  'midas'  the model's raw output, kept as is. MiDaS / DPT models (the authors used MiDaS v3.1
           DPT-BEiT-L-512, on the hub as 'Intel/dpt-beit-large-512') output relative inverse
           depth in the units the loader's 6250 was chosen for. Values are clipped to
           [0, 65504] (the fp16 range).
  'max'    each map is multiplied so that its maximum is RELATIVE_PEAK = 12504 (the first fp16
           value above 12500 = 6250 * 2), which the loader rescales to disparity exactly 2
           (nearest point at depth 0.5, the training near plane): what it does anyway to every
           MiDaS map whose maximum exceeds 12500. Use it for other relative-disparity models
           (e.g. Depth Anything), whose units differ.
  'auto'   'midas' for a transformers model of type 'dpt', else 'max'.
Metric-depth models (which output depth, not inverse depth) are not supported.

Backends: a `predict(images uint8 [B, H, W, 3]) -> disparity float32 [B, H, W]` callable.
  transformers  any `AutoModelForDepthEstimation` from a hub id or a local folder (the optional
                extra: `pip install 'ivid-jax[depth]'`), run with torch on CUDA if available.
  tiny-random   a small randomly initialised Flax conv net (seeded). It is NOT a depth
                estimator: it exists so that tests and smoke runs need no download.

Batching: images are grouped by size (a batch holds images of one size, as the backends resize
a batch to one working resolution and predictions back to that size); a group is run when it
holds `batch_size` images, or earlier when more than a few batches' worth wait in other sizes,
so datasets of mixed sizes (ImageNet) run mostly one by one and single-size datasets fully
batched.

Resuming: an output that exists and is a complete fp16 2-D `arr_0` (of the image's size, for a
folder) is skipped. Files are written to a hidden `.<name>.npz.*.partial` and renamed atomically, so a killed
run never leaves a truncated `.npz` behind; a corrupt one is recomputed.

TFDS input (`tfds.data_source(name, split, data_dir)`, array_record, no TensorFlow): examples
need 'image' and 'file_name'. The output path comes from file_name: a name with folders is kept
(`a/b.jpg` -> `a/b.npz`), an ImageNet train name `<synset>_<id>.JPEG` goes to its synset folder
(`n01440764/n01440764_10026.npz`, the authors' layout), any other name stays flat (`<stem>.npz`).
Resuming still decodes every TFDS image (the file name is only known after reading the example),
but skips the model.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from absl import logging
import numpy as np
from PIL import Image
import tqdm

from ivid_jax import atomic
from ivid_jax.data import preprocess
from ivid_jax.data.errors import BadExampleError
from ivid_jax.data.errors import SkipLog

DEFAULT_MODEL = 'Intel/dpt-beit-large-512'  # MiDaS v3.1 DPT-BEiT-L-512, the authors' model
TINY_RANDOM = 'tiny-random'
FP16_MAX = 65504.0
# The smallest fp16 value above 6250 * 2 (12500 itself rounds down to 12496): the loader then
# rescales the map to a maximum disparity of exactly 2, nearest point at depth 0.5.
RELATIVE_PEAK = float(np.nextafter(np.float16(preprocess.MIDAS_SCALE * 2.0), np.float16(np.inf)))
DEPTH_SCALES = ('auto', 'midas', 'max')
IMAGE_EXTENSIONS = preprocess.IMAGE_EXTENSIONS
_MAX_PENDING_BATCHES = 4  # images of other sizes that may wait, in units of batch_size

Predict = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Estimator:
  """A depth backend: `predict(uint8 [B, H, W, 3]) -> float32 [B, H, W]` relative disparity."""
  predict: Predict
  name: str
  depth_scale: str  # 'midas' or 'max': how outputs map to the stored units (module docstring)


# ---------------------------------------------------------------------------------------------
# Backends.

@functools.cache
def _tiny_depth_net():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  class TinyDepthNet(nn.Module):
    """Two stride-2 convs down, two up, softplus head: [B, S, S, 3] in [-1, 1] -> [B, S, S] > 0."""
    features: tuple[int, ...] = (8, 16)

    @nn.compact
    def __call__(self, x):
      h = x
      for i, f in enumerate(self.features):
        h = nn.relu(nn.Conv(f, (3, 3), strides=2, name=f'down_{i}')(h))
      for i, f in enumerate(reversed(self.features)):
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), 'nearest')
        h = nn.relu(nn.Conv(f, (3, 3), name=f'up_{i}')(h))
      assert h.shape[1:3] == x.shape[1:3], (h.shape, x.shape)
      return nn.softplus(nn.Conv(1, (3, 3), name='head')(h))[..., 0] + 1e-3

  return TinyDepthNet()


@functools.cache
def _tiny_apply():
  """One jitted forward pass shared by every tiny-random estimator of a process (one compile per batch size)."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.jit(_tiny_depth_net().apply)


def tiny_random_estimator(seed: int = 0, batch_size: int = 8, size: int = 32) -> Estimator:
  """A randomly initialised Flax conv net at a `size`² working resolution. For tests only.

  Images are resized to size² (PIL bilinear) and the prediction back to each image's H, W
  (PIL bilinear on float32); batches are padded to `batch_size` so it compiles once.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  if size % 4:
    raise ValueError(f'tiny-random working size must be a multiple of 4, got {size}')
  net = _tiny_depth_net()
  # Params drawn with numpy (LeCun normal kernels, zero biases) from the shapes alone: compiling
  # jax.random's normal sampler for each layer takes about a second each on a small CPU.
  shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))
  rng = np.random.default_rng(seed)

  def draw(leaf):
    if len(leaf.shape) == 1:
      return np.zeros(leaf.shape, np.float32)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32)

  params = jax.tree.map(draw, shapes)
  apply = _tiny_apply()

  def predict(images: np.ndarray) -> np.ndarray:
    images = _check_batch(images)
    b, h, w, _ = images.shape
    x = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR))
                  for im in images]).astype(np.float32) / 127.5 - 1.0
    out = []
    for start in range(0, b, batch_size):
      chunk = x[start:start + batch_size]
      padded = np.zeros((batch_size,) + chunk.shape[1:], np.float32)
      padded[:len(chunk)] = chunk
      out.append(np.asarray(apply(params, padded))[:len(chunk)])
    small = np.concatenate(out)
    return np.stack([_resize_float(d, h, w) for d in small])

  return Estimator(predict, f'{TINY_RANDOM}(seed={seed})', 'max')


def transformers_estimator(model: str, device: str | None = None) -> Estimator:
  """A transformers `AutoModelForDepthEstimation` from a hub id or a local folder.

  The model's own image processor resizes and normalises the batch; predictions are resized
  back with bicubic interpolation, as MiDaS's run.py does.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f'--model={model} needs the optional depth backend (transformers + torch): '
        f"pip install 'ivid-jax[depth]'  (or use --model={TINY_RANDOM} for a smoke run)") from e
  device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
  processor = transformers.AutoImageProcessor.from_pretrained(model)
  net = transformers.AutoModelForDepthEstimation.from_pretrained(model).to(device).eval()
  model_type = getattr(net.config, 'model_type', '')

  def predict(images: np.ndarray) -> np.ndarray:
    images = _check_batch(images)
    inputs = processor(images=list(images), return_tensors='pt').to(device)
    with torch.inference_mode():
      depth = net(**inputs).predicted_depth  # [B, h, w] at the working resolution
      depth = torch.nn.functional.interpolate(
          depth[:, None].float(), size=images.shape[1:3], mode='bicubic', align_corners=False)
    return depth[:, 0].cpu().numpy().astype(np.float32)

  return Estimator(predict, f'{model} ({model_type})', 'midas' if model_type == 'dpt' else 'max')


def make_estimator(model: str = DEFAULT_MODEL, *, seed: int = 0, batch_size: int = 8,
                   depth_scale: str = 'auto') -> Estimator:
  """'tiny-random', or a transformers model (hub id or local folder); see the module docstring."""
  if depth_scale not in DEPTH_SCALES:
    raise ValueError(f'depth_scale must be one of {DEPTH_SCALES}, got {depth_scale!r}')
  if model == TINY_RANDOM:
    estimator = tiny_random_estimator(seed=seed, batch_size=batch_size)
  else:
    estimator = transformers_estimator(model)
  if depth_scale != 'auto':
    estimator = dataclasses.replace(estimator, depth_scale=depth_scale)
  return estimator


def _check_batch(images: np.ndarray) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
    raise ValueError(f'expected uint8 images [B, H, W, 3], got {images.dtype} {images.shape}')
  return images


def _resize_float(x: np.ndarray, height: int, width: int) -> np.ndarray:
  image = Image.fromarray(np.asarray(x, np.float32), mode='F')
  return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), np.float32)


# ---------------------------------------------------------------------------------------------
# Stored values and files.

def to_stored(disparity: np.ndarray, depth_scale: str, name: str = '') -> np.ndarray:
  """A predicted disparity [H, W] -> the stored fp16 map [H, W] (module docstring: Scales)."""
  d = np.asarray(disparity, np.float32)
  if not np.isfinite(d).all():
    raise FloatingPointError(f'{name}: the depth model predicted NaN/inf')
  d = np.maximum(d, 0.0)
  if depth_scale == 'max':
    peak = float(d.max())
    if peak <= 0.0:
      raise FloatingPointError(f'{name}: the depth model predicted no positive disparity')
    d = d * (RELATIVE_PEAK / peak)
  elif depth_scale == 'midas':
    if d.max() > FP16_MAX:
      logging.warning('%s: disparity up to %.0f clipped to the fp16 maximum %.0f', name,
                      d.max(), FP16_MAX)
      d = np.minimum(d, FP16_MAX)
  else:
    raise ValueError(f'depth_scale must be midas or max here, got {depth_scale!r}')
  return d.astype(np.float16)


def write_depth_npz(path: str | os.PathLike, disparity: np.ndarray) -> None:
  """Writes the authors' format (np.savez of one fp16 array -> `arr_0`) atomically."""
  # A file object: np.savez would append '.npz' to a name.
  atomic.write_atomic(path, lambda f: np.savez(f, np.asarray(disparity, np.float16)))


def is_finished(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> bool:
  """Whether `path` is a complete depth file: fp16 2-D `arr_0` (of `shape`, if given).

  Reads only the zip directory and the .npy header, so checking a finished dataset is cheap.
  """
  try:
    with zipfile.ZipFile(path) as z:
      info = z.getinfo('arr_0.npy')
      with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        array_shape, _, dtype = read_header(f)
        header_bytes = f.tell()
  except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
    return False
  return (dtype == np.float16 and len(array_shape) == 2
          and (shape is None or tuple(array_shape) == tuple(shape))
          and info.file_size == header_bytes + int(np.prod(array_shape)) * dtype.itemsize)


# ---------------------------------------------------------------------------------------------
# Inputs.

@dataclasses.dataclass(frozen=True)
class Item:
  """One image to process: `name` for messages, where its depth goes, how to read it."""
  name: str
  out_path: str
  load: Callable[[], np.ndarray]  # -> uint8 [H, W] or [H, W, C]; raises BadExampleError
  # -> (H, W) if known without decoding (checked against an existing output), else None.
  shape: Callable[[], tuple[int, int] | None] = lambda: None


def folder_items(images_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[Item]:
  """Every image under `images_dir` (recursive, sorted) -> out_dir/<rel path>.npz."""
  images_dir, out_dir = os.fspath(images_dir), os.fspath(out_dir)
  if not os.path.isdir(images_dir):
    raise FileNotFoundError(f'--images={images_dir} is not a folder')
  paths, others = [], 0
  for root, dirs, files in os.walk(images_dir):
    dirs.sort()
    for name in sorted(files):
      if preprocess.is_image_file(name):
        paths.append(os.path.join(root, name))
      elif not name.startswith('.'):
        others += 1
  if others:
    logging.info('%s: ignored %d file(s) without an image extension %s', images_dir, others,
                 IMAGE_EXTENSIONS)
  items, owner = [], {}
  for path in paths:
    rel = os.path.splitext(os.path.relpath(path, images_dir))[0] + '.npz'
    out = os.path.join(out_dir, rel)
    if out in owner:
      raise ValueError(f'{path} and {owner[out]} would both write {out}')
    owner[out] = path
    items.append(Item(path, out, functools.partial(preprocess.read_image, path),
                      functools.partial(_image_size, path)))
  return items


def _image_size(path: str) -> tuple[int, int] | None:
  try:
    with Image.open(path) as img:  # reads the header only
      return img.size[1], img.size[0]
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
    return None  # read_image will say what is wrong


def tfds_relative_path(file_name: str | bytes) -> str:
  """A TFDS example's file_name -> its depth path relative to the output folder."""
  if isinstance(file_name, bytes):
    file_name = file_name.decode('utf-8')
  file_name = file_name.replace('\\', '/')
  stem = os.path.splitext(file_name)[0]
  parts = stem.split('/')
  if not stem or file_name.startswith('/') or any(p in ('', '.', '..') for p in parts):
    raise ValueError(f'file_name {file_name!r} cannot be used as a relative output path')
  synset = preprocess.synset_of(stem) if '/' not in stem else None
  if synset:
    return f'{synset}/{stem}.npz'
  return stem + '.npz'


def tfds_items(source: Sequence[dict[str, Any]], out_dir: str | os.PathLike,
               label: str = 'tfds') -> Iterator[Item]:
  """Examples {'image', 'file_name'} of a random-access source (tfds.data_source) -> Items.

  Each example is read (and its image decoded) here, as its output path needs its file_name.
  """
  out_dir = os.fspath(out_dir)
  for i in range(len(source)):
    name = f'{label}[{i}]'
    try:
      example = source[i]
    except Exception as e:  # pylint: disable=broad-except
      # TFDS's PIL decoding raises whatever PIL raises; it is this example's problem.
      error = BadExampleError(name, f'cannot read example ({type(e).__name__}: {e})')
      yield Item(name, os.path.join(out_dir, f'.unreadable/{i}.npz'), _raiser(error))
      continue
    if 'image' not in example or 'file_name' not in example:
      raise ValueError(f'{label}: examples need "image" and "file_name", got {sorted(example)}')
    file_name = example['file_name']
    file_name = file_name.decode('utf-8') if isinstance(file_name, bytes) else str(file_name)
    image = np.asarray(example['image'])
    yield Item(f'{name} {file_name}', os.path.join(out_dir, tfds_relative_path(file_name)),
               lambda image=image: image, lambda shape=image.shape[:2]: shape)


def _raiser(error: Exception) -> Callable[[], np.ndarray]:
  def load():
    raise error
  return load


def _rgb(image: np.ndarray, name: str) -> np.ndarray:
  """uint8 [H, W] / [H, W, 1|3|4] -> uint8 [H, W, 3] (grey repeated, alpha dropped)."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or min(image.shape[:2]) < 1:
    raise BadExampleError(name, f'image has unusable shape {image.shape}')
  if image.dtype != np.uint8:
    raise BadExampleError(name, f'image must be uint8, got {image.dtype}')
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return np.ascontiguousarray(image[..., :3])


# ---------------------------------------------------------------------------------------------
# The run.

@dataclasses.dataclass
class Summary:
  """What a run did: files written, outputs already finished, bad examples skipped."""
  written: int = 0
  existing: int = 0
  skip_log: SkipLog = dataclasses.field(default_factory=SkipLog)

  @property
  def bad(self) -> int:
    return len(self.skip_log)

  def report(self) -> str:
    lines = [f'wrote {self.written} depth map(s), skipped {self.existing} already finished, '
             f'{self.bad} bad example(s)']
    if self.bad:
      lines.append(self.skip_log.report())
    return '\n'.join(lines)


def estimate_depths(items: Iterable[Item], estimator: Estimator, *, batch_size: int = 8,
                    skip_bad_examples: bool = False, total: int | None = None,
                    progress: bool = True) -> Summary:
  """Predicts and writes depth for every item whose output is not finished yet.

  Raises BadExampleError (naming the file) for an unreadable image unless skip_bad_examples,
  which logs and counts it instead.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  summary = Summary()
  pending: dict[tuple[int, int], list[tuple[Item, np.ndarray]]] = {}
  seen: dict[str, str] = {}

  def flush(size):
    group = pending.pop(size)
    disparity = np.asarray(estimator.predict(np.stack([image for _, image in group])))
    if disparity.shape != (len(group),) + size:
      raise ValueError(f'{estimator.name} returned {disparity.shape} for a batch of '
                       f'{len(group)} images of {size}')
    for (item, _), d in zip(group, disparity):
      write_depth_npz(item.out_path, to_stored(d, estimator.depth_scale, item.name))
      summary.written += 1

  for item in tqdm.tqdm(items, total=total, unit='img', desc='depth', disable=not progress):
    if item.out_path in seen:
      raise ValueError(f'{item.name} and {seen[item.out_path]} would both write {item.out_path}')
    seen[item.out_path] = item.name
    # Only read the image header when there is an output to check.
    if os.path.exists(item.out_path) and is_finished(item.out_path, item.shape()):
      summary.existing += 1
      continue
    try:
      image = _rgb(item.load(), item.name)
    except BadExampleError as e:
      if not skip_bad_examples:
        raise
      summary.skip_log.add(e)
      continue
    size = image.shape[:2]
    pending.setdefault(size, []).append((item, image))
    if len(pending[size]) >= batch_size:
      flush(size)
    elif sum(map(len, pending.values())) > _MAX_PENDING_BATCHES * batch_size:
      flush(max(pending, key=lambda s: len(pending[s])))
  for size in list(pending):
    flush(size)
  return summary


def run(*, out: str, images: str | None = None, tfds_name: str | None = None,
        data_dir: str | None = None, model: str = DEFAULT_MODEL, batch_size: int = 8,
        skip_bad_examples: bool = False, seed: int = 0, depth_scale: str = 'auto',
        progress: bool = True) -> Summary:
  """The `ivid-jax estimate-depth` command: exactly one of `images` (a folder) or `tfds_name`
  ('name' or 'name:split', default split 'train')."""
  if (images is None) == (tfds_name is None):
    raise ValueError('give exactly one of --images=DIR or --tfds=NAME[:split]')
  if images is not None:
    items = folder_items(images, out)
    source_items, total = items, len(items)
  else:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    name, _, split = tfds_name.partition(':')
    source = tfds.data_source(name, split=split or 'train', data_dir=data_dir)
    source_items = tfds_items(source, out, label=f'{name}:{split or "train"}')
    total = len(source)
  estimator = make_estimator(model, seed=seed, batch_size=batch_size, depth_scale=depth_scale)
  logging.info('estimating depth with %s (scale %s) for %d image(s) -> %s', estimator.name,
               estimator.depth_scale, total, out)
  return estimate_depths(source_items, estimator, batch_size=batch_size,
                         skip_bad_examples=skip_bad_examples, total=total, progress=progress)
