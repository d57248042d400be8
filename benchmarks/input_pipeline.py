"""Input pipeline throughput per host CPU core, and a picture of a conditional batch.

  python benchmarks/input_pipeline.py [--size=128] [--batch_size=16] [--batches=8]
      [--tfds=NAME --data_dir=DIR --split=train] [--out=outputs/input_pipeline/batch.png]

Rows of the table: (a) the unconditional loader (read, check, x0 conversion,
batching); (b) the conditional loader (plus camera and key per example); (c)
the conditional loader followed by the jitted on-device `make_training_pair`
(forward-backward warp at ssaa 3 and the augmentations), blocking on the
result. On a CPU-only machine (c) runs the warp on the same cores, so it is the
warp's cost, not the loader's. Without --tfds the source is an in-memory set
of random smooth RGBD scenes, so no dataset is needed.
"""

from __future__ import annotations

import os
import platform
import time

import jax
import numpy as np
from absl import app
from absl import flags
from PIL import Image

from ivid_jax import images
from ivid_jax.data import conditional
from ivid_jax.data import pipeline

_SIZE = flags.DEFINE_integer('size', 128, 'Image size of the synthetic source.')
_NUM_EXAMPLES = flags.DEFINE_integer('num_examples', 512, 'Examples in the synthetic source.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Global batch size.')
_BATCHES = flags.DEFINE_integer('batches', 64, 'Timed batches per row (after one warm-up).')
_PAIR_BATCHES = flags.DEFINE_integer('pair_batches', 2, 'Timed batches of row (c).')
_THREADS = flags.DEFINE_integer('read_threads', 4, 'grain read threads.')
_SSAA = flags.DEFINE_integer('ssaa', 3, 'Warp supersampling.')
_TFDS = flags.DEFINE_string('tfds', None, 'Read this built TFDS dataset with tfds.data_source.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir.')
_SPLIT = flags.DEFINE_string('split', 'train', 'TFDS split.')
_OUT = flags.DEFINE_string('out', 'outputs/input_pipeline/batch.png', 'Picture of one batch.')
_PICTURE_EXAMPLES = flags.DEFINE_integer('picture_examples', 8, 'Columns of the picture.')


def _cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def _time(fn, batches: int) -> float:
  """Examples per second over `batches` calls of fn() -> batch size, after one warm-up."""
  fn()
  start = time.perf_counter()
  n = sum(fn() for _ in range(batches))
  return n / (time.perf_counter() - start)


def _source():
  if _TFDS.value:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    return pipeline.first_view(tfds.data_source(_TFDS.value, split=_SPLIT.value,
                                                data_dir=_DATA_DIR.value))
  return pipeline.random_smooth_source(_NUM_EXAMPLES.value, _SIZE.value)


def _loader(source, conditional_: bool):
  return pipeline.make_loader(source, global_batch_size=_BATCH.value, seed=0, shard_index=0,
                              shard_count=1, read_threads=_THREADS.value,
                              conditional=conditional_)


def _tile(rows: list[np.ndarray]) -> np.ndarray:
  """Rows of [N, H, W, 1 or 3] float images in [0, 1] -> one uint8 [rows H, N W, 3] picture."""
  n = len(rows[0])
  tiles = np.concatenate([np.broadcast_to(r, r.shape[:3] + (3,)) for r in rows])
  index = [list(range(i * n, (i + 1) * n)) for i in range(len(rows))]
  return images.to_uint8(images.grid(tiles, index, padding=0, border=False), 'nearest')


def write_picture(pair: dict[str, np.ndarray], path: str, n: int) -> None:
  """Rows: RGB, depth, condition RGB (holes black), condition depth, mask, mask_rgb."""
  x0, y = (pair['x0'][:n] + 1) / 2, (pair['y'][:n] + 1) / 2
  picture = _tile([x0[..., :3], x0[..., 3:], y[..., :3] * pair['mask_rgb'][:n],
                   y[..., 3:] * pair['mask'][:n], pair['mask'][:n], pair['mask_rgb'][:n]])
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(picture).save(path)


def main(argv):
  del argv
  source = _source()
  size = np.asarray(source[0]['rgb']).shape[0]
  cores = _cores()
  device = jax.devices()[0]
  print(f'# {len(source)} examples of {size} px ({source!r}), global batch {_BATCH.value}, '
        f'{cores} host CPU core(s), {_THREADS.value} read threads, {device.platform.upper()} '
        f'{device.device_kind} x{jax.device_count()}, {platform.processor() or platform.machine()}, '
        f'jax {jax.__version__}')

  rows = []
  for name, cond in (('(a) unconditional loader', False), ('(b) conditional loader', True)):
    it = _loader(source, cond)
    eps = _time(lambda it=it: len(next(it)['label']), _BATCHES.value)
    rows.append((name, eps))

  it = _loader(source, True)

  def pair_step():
    batch = next(it)
    jax.block_until_ready(conditional.pair_from_batch(batch, ssaa=_SSAA.value))
    return len(batch['label'])

  start = time.perf_counter()
  pair_step()
  compile_s = time.perf_counter() - start
  rows.append((f'(c) conditional loader + on-device pair (ssaa {_SSAA.value})',
               _time(pair_step, _PAIR_BATCHES.value)))

  print(f'| pipeline ({size} px) | examples / s | examples / s per host core |')
  print('|---|---:|---:|')
  for name, eps in rows:
    print(f'| {name} | {eps:.1f} | {eps / cores:.1f} |')
  print(f'\n(c) first call incl. compilation: {compile_s:.1f} s')

  batch = next(_loader(source, True))
  pair = jax.tree.map(np.asarray, conditional.pair_from_batch(batch, ssaa=_SSAA.value))
  write_picture(pair, _OUT.value, _PICTURE_EXAMPLES.value)
  print(f'wrote {_OUT.value}: rows RGB, depth, condition RGB, condition depth, mask, mask_rgb; '
        f'mask mean {pair["mask"].mean():.3f}, mask_rgb mean {pair["mask_rgb"].mean():.3f}')


if __name__ == '__main__':
  app.run(main)
