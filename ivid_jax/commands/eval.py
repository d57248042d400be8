"""ivid-jax eval: FID, KID and IS of generated images by the authors' protocol (reference 8).

  ivid-jax eval --fake=OUT/results --real=IMAGENET/train --inception=PTH
  ivid-jax eval --fake=OUT/results --tfds=imagenet2012:train --data_dir=DIR --inception=PTH

PTH: pt_inception-2015-12-05-6726825d.pth, the FID Inception weights (see --inception).

--fake: the sampler's `results/` folder (128 x 128 PNGs); --num_samples of them
(10,000, the paper's count) are drawn with --seed when it holds more, and fewer
is an error. The real set is every png/jpg/jpeg under --real (recursive) or
every example of a TFDS split, centre-cropped and Lanczos-resized to 128 as
eval.py does; its features are cached in --cache_dir. Features come from the
FID Inception (torch-fidelity's inception-v3-compat, the paper's), whose
weights ivid-jax never downloads: pass --inception (the .pth, read with torch
if installed, or an .npz of its tensors). Writes <--out>/eval.json (every
number and setting) and eval.md (the table); --out defaults to outputs/eval.
"""

from __future__ import annotations

from absl import app
from absl import flags

from ivid_jax.commands import outputs

_FAKE = flags.DEFINE_string('fake', None, "Generated PNGs (the sampler's <out>/results).")
_REAL = flags.DEFINE_string('real', None, 'Folder of real images (png/jpg/jpeg, recursive).')
_TFDS = flags.DEFINE_string('tfds', None, 'Real images from a TFDS split, NAME[:SPLIT] (default '
                            'split train), read with tfds.data_source.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir for --tfds.')
_TFDS_KEY = flags.DEFINE_string('tfds_key', 'image', 'The image feature of --tfds examples.')
_TFDS_VIEW = flags.DEFINE_integer('tfds_view', 0, 'For multi-view examples ([V, H, W, 3], '
                                  'e.g. synthetic_rgbd\'s rgb): the view used.')
_INCEPTION = flags.DEFINE_string('inception', None, 'The FID Inception weights, '
                                 'pt_inception-2015-12-05-6726825d.pth (or an .npz of its '
                                 'tensors under the same names).')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 10_000, 'Generated images used; 0 = all.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 128, 'Resolution compared (the protocol: 128).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 250, 'Images per Inception step over all local '
                                   'devices (rounded up to a multiple of the device count).')
_CACHE_DIR = flags.DEFINE_string('cache_dir', '~/.cache/ivid-jax/eval', 'Real-feature cache; '
                                 'empty: no cache.')
_OUT = flags.DEFINE_string('out', outputs.default_out('eval'), 'Report folder (refused if it '
                           'holds files, unless --overwrite).')
flags.declare_key_flag('overwrite')
_SEED = flags.DEFINE_integer('seed', 0, 'Draw of --num_samples generated images.')
_KID_SUBSET_SIZE = flags.DEFINE_integer('kid_subset_size', 1000, 'KID subset size (torch-fidelity: '
                                        '1000; smaller only for small sets).')
_SKIP_BAD = flags.DEFINE_bool('skip_bad_examples', False, 'Count and skip unreadable real images '
                              'instead of stopping.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'eval takes no positional arguments, got {argv[1:]}')
  if _FAKE.value is None or _INCEPTION.value is None:
    raise app.UsageError('eval needs --fake=DIR and --inception=PATH')
  if (_REAL.value is None) == (_TFDS.value is None):
    raise app.UsageError('eval needs exactly one real set: --real=DIR or --tfds=NAME[:split]')
  out = outputs.check_out(_OUT.value)
  from ivid_jax.evaluation import fidelity  # pylint: disable=g-import-not-at-top
  from ivid_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  from ivid_jax.data.errors import BadExampleError  # pylint: disable=g-import-not-at-top
  try:
    result = fidelity.evaluate(
        fake=_FAKE.value, inception_path=_INCEPTION.value, real=_REAL.value,
        tfds_spec=_TFDS.value, data_dir=_DATA_DIR.value, tfds_key=_TFDS_KEY.value,
        tfds_view=_TFDS_VIEW.value, num_samples=_NUM_SAMPLES.value or None,
        image_size=_IMAGE_SIZE.value, batch_size=_BATCH_SIZE.value,
        cache_dir=_CACHE_DIR.value or None, seed=_SEED.value,
        kid_subset_size=_KID_SUBSET_SIZE.value, skip_bad_examples=_SKIP_BAD.value)
  except BadExampleError as e:
    raise ValueError(f'{e} (--skip_bad_examples counts and skips unreadable real images; a '
                     'generated image is never skipped)') from e
  markdown = fidelity.markdown(result)
  paths = report.write(out, 'eval', result, markdown)
  print(markdown)
  print('wrote ' + ' and '.join(paths))
