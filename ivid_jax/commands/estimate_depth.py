"""ivid-jax estimate-depth: monocular depth maps in the authors' format.

  ivid-jax estimate-depth --images=ROOT/images [--out=ROOT/depths] [--depth_model=ID|PATH]
  ivid-jax estimate-depth --tfds=NAME[:split] --data_dir=DIR --out=DIR

For each image <--images>/<rel>.<ext> (recursive), or each example of
--tfds=NAME[:split], writes <--out>/<rel>.npz holding one fp16 relative inverse
depth map (key arr_0) at the image's size, as the authors' MiDaS maps are
stored (reference 1.1). Batched, with a progress bar; resumable (finished
files are skipped, broken ones recomputed: a rerun resumes its --out, it does not
overwrite it). --depth_model: a transformers depth model,
hub id or local folder (default Intel/dpt-beit-large-512, the authors' MiDaS
DPT-BEiT-L-512; needs pip install 'ivid-jax[depth]'), or tiny-random (an
untrained net for smoke runs, not real depth).
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

from ivid_jax.commands import outputs

_IMAGES = flags.DEFINE_string(
    'images', None, 'A folder of images (searched recursively), e.g. ROOT/images of the '
    "authors' layout.")
_TFDS = flags.DEFINE_string(
    'tfds', None, 'A TFDS dataset prepared as array_record, NAME or NAME:SPLIT (default split '
    'train), read with tfds.data_source.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir for --tfds.')
_OUT = flags.DEFINE_string(
    'out', None, 'The depth folder (ROOT/depths); default: a `depths` folder beside --images '
    'when that folder is called `images`, else outputs/estimate-depth. A rerun resumes it.')
_DEPTH_MODEL = flags.DEFINE_string(
    'depth_model', 'Intel/dpt-beit-large-512', 'A transformers depth model (hub id or local '
    "folder; pip install 'ivid-jax[depth]') or tiny-random (untrained, smoke runs).")
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 8, 'Images per model call.')
_DEPTH_SCALE = flags.DEFINE_enum(
    'depth_scale', 'auto', ['auto', 'midas', 'max'], 'midas keeps MiDaS/DPT units; max scales '
    'each map to a maximum of 12504, read by the loader as disparity 2 (depth 0.5); auto picks '
    'midas for DPT models, else max.')
_SKIP_BAD = flags.DEFINE_bool(
    'skip_bad_examples', False, 'Log, count and skip unreadable images instead of stopping.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'estimate-depth takes no positional arguments, got {argv[1:]}')
  if (_IMAGES.value is None) == (_TFDS.value is None):
    raise app.UsageError('estimate-depth needs exactly one of --images=DIR or --tfds=NAME[:split]')
  out = _OUT.value
  images = _IMAGES.value
  if out is None and images and os.path.basename(os.path.normpath(images)) == 'images':
    out = os.path.join(os.path.dirname(os.path.normpath(images)), 'depths')
  out = out or outputs.default_out('estimate-depth')
  from ivid_jax.data import estimate_depth  # pylint: disable=g-import-not-at-top
  try:
    summary = estimate_depth.run(
        out=out, images=_IMAGES.value, tfds_name=_TFDS.value, data_dir=_DATA_DIR.value,
        model=_DEPTH_MODEL.value, batch_size=_BATCH_SIZE.value, depth_scale=_DEPTH_SCALE.value,
        skip_bad_examples=_SKIP_BAD.value)
  except estimate_depth.BadExampleError as e:
    raise ValueError(f'{e} (--skip_bad_examples logs, counts and skips such images; rerunning '
                     'resumes where this run stopped)') from e
  print(summary.report())
  print(f'depths: {out}')
