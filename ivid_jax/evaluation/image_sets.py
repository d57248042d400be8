"""The fake and real image sets of the authors' protocol (reference 8), and real-feature caches.

Fakes: the `*.png` files directly in a folder (the sampler's `results/`), each
read as RGB and required to be `size` x `size`; `num_samples` of them (10,000 in
the paper) drawn without replacement by a seeded RandomState when there are more.

Reals: every png/jpg/jpeg under a folder (recursive), or every example of a TFDS
split, preprocessed as eval.py does: CMYK to RGB, the central square of the
shorter side (PIL's integer crop box), a PIL Lanczos resize to `size`, then
RGB (greyscale and RGBA images are cropped and resized in their own mode and
converted afterwards, as torch-fidelity reads eval.py's saved PNGs). An image
that cannot be read stops the run with its path, or is counted and reported
with `skip_bad_examples` (eval.py printed and skipped it).

Real features are cached in `cache_dir` as `<source>-<count>-<size>px.npz`
(the 2048-d pool features and their FID statistics; IS never uses reals),
tagged with a digest of the Inception weights so that a cache of other weights
is recomputed, not reused; files are written atomically.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from absl import logging
import jax
import numpy as np
from PIL import Image

from ivid_jax import atomic
from ivid_jax.data.errors import BadExampleError
from ivid_jax.data.errors import SkipLog
from ivid_jax.evaluation import inception
from ivid_jax.evaluation import metrics

REAL_EXTENSIONS = ('.png', '.jpg', '.jpeg')  # eval.py's glob, any case
IMAGE_SIZE = 128
_CHUNK = 64  # images per reader chunk
_WORKERS = 8  # PIL releases the GIL while decoding and resampling


def center_crop_resize(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
  """eval.py's real-image preprocessing -> uint8 [size, size, 3].

  CMYK -> RGB; crop the central square ((w - h) // 2 .. (w + h) // 2 along the
  longer side); Lanczos resize to size x size; then RGB (as torch-fidelity
  converts every image it reads).
  """
  if image.mode == 'CMYK':
    image = image.convert('RGB')
  w, h = image.size
  if w > h:
    image = image.crop(((w - h) // 2, 0, (w + h) // 2, h))
  elif h > w:
    image = image.crop((0, (h - w) // 2, w, (h + w) // 2))
  image = image.resize((size, size), Image.LANCZOS)
  return np.asarray(image.convert('RGB'))


def read_real(path: str, size: int = IMAGE_SIZE) -> np.ndarray:
  """A real image file -> uint8 [size, size, 3]; BadExampleError naming the file."""
  try:
    with Image.open(path) as image:
      image.load()
      return center_crop_resize(image, size)
  except FileNotFoundError:
    raise BadExampleError(path, 'image file is missing') from None
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise BadExampleError(path, f'cannot decode image ({type(e).__name__}: {e})') from None


def read_fake(path: str, size: int = IMAGE_SIZE) -> np.ndarray:
  """A generated image -> uint8 [size, size, 3] (RGB); BadExampleError unless size x size."""
  try:
    with Image.open(path) as image:
      image.load()
      array = np.asarray(image.convert('RGB'))
  except FileNotFoundError:
    raise BadExampleError(path, 'image file is missing') from None
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise BadExampleError(path, f'cannot decode image ({type(e).__name__}: {e})') from None
  if array.shape[:2] != (size, size):
    raise BadExampleError(path, f'generated image is {array.shape[1]}x{array.shape[0]}, the '
                          f'protocol compares {size}x{size} images')
  return array


def list_real_images(root: str) -> list[str]:
  """Every png/jpg/jpeg (any case) under root, recursively, sorted."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f'{root}: no such folder (real images)')
  paths = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files
           if os.path.splitext(f)[1].lower() in REAL_EXTENSIONS]
  if not paths:
    raise ValueError(f'{root}: no png/jpg/jpeg images found (searched recursively)')
  return sorted(paths)


def list_fake_images(folder: str, num_samples: int | None, seed: int = 0) -> list[str]:
  """`num_samples` of the `*.png` directly in folder (all if None), sorted.

  More than asked: a seeded draw without replacement. Fewer: an error (the
  paper's numbers are for 10,000; FID is biased upwards at smaller counts).
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'{folder}: no such folder (generated images)')
  paths = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                 if f.lower().endswith('.png') and os.path.isfile(os.path.join(folder, f)))
  if not paths:
    raise ValueError(f'{folder}: no .png images (the sampler writes them to <out>/results/)')
  if num_samples is None:
    return paths
  if len(paths) < num_samples:
    raise ValueError(f'{folder}: {len(paths)} .png images, fewer than the {num_samples} asked '
                     f'for; sample more, or pass --num_samples={len(paths)} (FID grows as the '
                     'count shrinks, so compare only numbers of equal counts)')
  chosen = np.random.RandomState(seed).choice(len(paths), num_samples, replace=False)
  return [paths[i] for i in sorted(chosen)]


def _read_all(items: Sequence[Any], read: Callable[[Any], np.ndarray], skip_log: SkipLog | None,
              ) -> Iterator[np.ndarray]:
  """uint8 [b, S, S, 3] chunks of read(item), in order, read by a thread pool."""
  def read_or_skip(item):
    try:
      return read(item)
    except BadExampleError as e:
      if skip_log is None:
        raise
      skip_log.add(e)
      return None

  with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
    for start in range(0, len(items), _CHUNK):
      images = [x for x in pool.map(read_or_skip, items[start:start + _CHUNK]) if x is not None]
      if images:
        yield np.stack(images)


def folder_images(paths: Sequence[str], read: Callable[[str], np.ndarray],
                  skip_log: SkipLog | None = None) -> Iterator[np.ndarray]:
  """uint8 chunks [b, S, S, 3] of read(path) over paths (see `_read_all`)."""
  return _read_all(list(paths), read, skip_log)


def parse_tfds(spec: str) -> tuple[str, str]:
  """'NAME[:SPLIT]' -> (name, split); the split defaults to 'train'."""
  name, _, split = spec.partition(':')
  if not name:
    raise ValueError(f'--tfds must be NAME[:SPLIT], got {spec!r}')
  return name, split or 'train'


def tfds_images(source: Any, *, size: int = IMAGE_SIZE, key: str = 'image', view: int = 0,
                name: str = 'tfds', skip_log: SkipLog | None = None) -> Iterator[np.ndarray]:
  """Preprocessed chunks of a random-access source (`tfds.data_source`) of examples.

  Args:
    source: indexable, len() examples; example[key] is uint8 [H, W, C] (C 1 or 3),
      or [V, H, W, C] multi-view (synthetic_rgbd's 'rgb'), of which `view` is used.
    size, key, view: as above.
    name: the source's name in errors.
  """
  def read(index: int) -> np.ndarray:
    example = source[index]
    if key not in example:
      raise ValueError(f'{name}: examples have no {key!r} feature (they have {sorted(example)})')
    array = np.asarray(example[key])
    if array.ndim == 4:
      array = array[view]
    if array.ndim == 3 and array.shape[-1] == 1:
      array = array[..., 0]
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
      raise BadExampleError(f'{name}[{index}]', f'{key!r} is {array.dtype} {array.shape}, not a '
                            'uint8 image')
    return center_crop_resize(Image.fromarray(array), size)

  return _read_all(range(len(source)), read, skip_log)


def weights_digest(variables: inception.Variables) -> str:
  """A short digest of the Inception weights (caches of other weights are not reused)."""
  h = hashlib.sha1()
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(variables)[0],
                           key=lambda x: jax.tree_util.keystr(x[0])):
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(leaf, np.float32).tobytes())
  return h.hexdigest()[:12]


def cache_path(cache_dir: str, source: str, count: int, size: int) -> str:
  """`<cache_dir>/<source, path separators as _>-<count>-<size>px.npz` (eval.py's naming)."""
  slug = re.sub(r'[^A-Za-z0-9._-]+', '_', source).strip('_') or 'images'
  return os.path.join(cache_dir, f'{slug}-{count}-{size}px.npz')


def load_cache(path: str, digest: str) -> tuple[np.ndarray, metrics.FidStatistics] | None:
  """(pool features, FID statistics) from a cache of the same weights; None otherwise."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as data:
      meta = json.loads(str(data['meta']))
      if meta.get('weights') != digest:
        logging.info('%s: computed with other Inception weights; recomputing', path)
        return None
      return data['pool'], metrics.FidStatistics(data['mu'], data['sigma'])
  except (OSError, ValueError, KeyError) as e:
    logging.warning('%s: unreadable feature cache (%s); recomputing', path, e)
    return None


def save_cache(path: str, pool: np.ndarray, stats: metrics.FidStatistics, meta: dict) -> None:
  """Writes the cache atomically (a killed run leaves no partial file under the final name)."""
  atomic.write_atomic(path, lambda f: np.savez(f, pool=pool, mu=stats.mu, sigma=stats.sigma,
                                               meta=np.array(json.dumps(meta))))


def real_features(variables: inception.Variables, *, folder: str | None = None,
                  tfds_spec: str | None = None, data_dir: str | None = None,
                  size: int = IMAGE_SIZE, tfds_key: str = 'image', tfds_view: int = 0,
                  cache_dir: str | None = None, batch_size: int = 250,
                  skip_bad_examples: bool = False, progress: bool = True
                  ) -> tuple[np.ndarray, metrics.FidStatistics, dict]:
  """Pool features and FID statistics of the real set, from the cache when it holds them.

  Exactly one of `folder` and `tfds_spec` ('NAME[:SPLIT]', read with
  tfds.data_source from `data_dir`).

  Returns:
    (pool float32 [M, 2048], FidStatistics, info: source, count, cache path, skipped).
  """
  if (folder is None) == (tfds_spec is None):
    raise ValueError('the real set is a folder or a TFDS split: give exactly one')
  skip_log = SkipLog() if skip_bad_examples else None
  if folder is not None:
    paths = list_real_images(folder)
    source, count = os.path.abspath(folder), len(paths)
    images = lambda: folder_images(paths, lambda p: read_real(p, size), skip_log)
  else:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    name, split = parse_tfds(tfds_spec)
    data = tfds.data_source(name, split=split, data_dir=data_dir)
    source, count = f'{name}:{split}', len(data)
    images = lambda: tfds_images(data, size=size, key=tfds_key, view=tfds_view, name=source,
                                 skip_log=skip_log)
  digest = weights_digest(variables)
  path = cache_path(cache_dir, source, count, size) if cache_dir else None
  info = {'source': source, 'count': count, 'size': size, 'cache': path}
  cached = load_cache(path, digest) if path else None
  if cached is not None:
    logging.info('real features from %s', path)
    return cached[0], cached[1], {**info, 'cached': True, 'used': len(cached[0])}
  pool = inception.extract(variables, images(), batch_size=batch_size, total=count,
                           progress=progress, desc=f'real {source}')['pool']
  stats = metrics.fid_statistics(pool)
  skipped = skip_log.skipped if skip_log else []
  if skip_log:
    logging.warning(skip_log.report())
  if path:
    save_cache(path, pool, stats, {'source': source, 'count': count, 'used': len(pool),
                                   'size': size, 'weights': digest, 'skipped': skipped})
  return pool, stats, {**info, 'cached': False, 'used': len(pool), 'skipped': skipped}


def fake_features(variables: inception.Variables, folder: str, *, num_samples: int | None,
                  size: int = IMAGE_SIZE, seed: int = 0, batch_size: int = 250,
                  progress: bool = True) -> tuple[dict[str, np.ndarray], dict]:
  """Pool features and unbiased logits of the generated images (never cached: they change)."""
  paths = list_fake_images(folder, num_samples, seed)
  feats = inception.extract(variables, folder_images(paths, lambda p: read_fake(p, size)),
                            batch_size=batch_size, total=len(paths), progress=progress,
                            desc='generated')
  return feats, {'source': os.path.abspath(folder), 'count': len(paths), 'size': size}
