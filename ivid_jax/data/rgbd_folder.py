"""The authors' RGBD folder layout (reference 1.1) as a TFDS builder and a plain source.

Two layouts are recognised under a dataset root:

  ImageNet type (labelled)            single-category type (unlabelled)
  images/<class>/<name>.<ext>         images/<name>.<ext>
  depths/<class>/<name>.npz           depths/<name>.npz
  dataset.json (optional)             dataset.json (optional)

Each `.npz` holds one float16 MiDaS disparity map (`arr_0`, the authors' scale:
larger is nearer, divided by 6250 in `preprocess.scale_disparity`) with its
image's aspect ratio. Labels are the sorted class folder names -> 0..N-1, as the
authors assign them; single-category examples get label -1. Image extensions
accepted (case-insensitive): `preprocess.IMAGE_EXTENSIONS` (.jpg .jpeg .png .bmp
.webp .tif .tiff .gif .ppm), the list `estimate-depth` writes depth for; the
authors collect only `*.JPEG` for the ImageNet type, which this includes. If `dataset.json` exists its
`images`, `depths` (paths relative to the root) and `labels` (class -> int) are
used as they are; otherwise the folder is listed in sorted order and nothing is
written to it unless `write_index=True`.

Every example goes through `load_example` (read_image, read_depth_npz,
check_depth_matches, rgbd_example), giving
  {'rgb': uint8 [S, S, 3], 'depth': float32 [S, S, 1] (z-buffer in [0, 1] by
   default), 'label': int64 scalar, 'file_name': bytes (relative image path)}.

Building a TFDS dataset (array_record, TF-free, read with `as_data_source`):

  builder = RgbdFolder(data_dir=DATA, resolution=128, source_dir=ROOT)
  builder.download_and_prepare()
  train = builder.as_data_source()['train']

`source_dir` may also be given the TFDS way, as
`download_config=tfds.download.DownloadConfig(manual_dir=ROOT)`. The config name
(`res128`, `res64_disparity_minmax`, `res128_holdout0.05`, ...) holds
everything that changes the stored data, so builds at different resolutions
live side by side under `DATA/rgbd_folder/<config>/<version>/`; reading back
needs no source: `RgbdFolder(data_dir=DATA, resolution=64).as_data_source()`.

Bad input (corrupt or truncated image, missing file, NaN/inf depth, depth of the
wrong aspect) raises `BadExampleError` naming the file and the problem. With
`skip_bad_examples=True` each is logged and counted in a `SkipLog` instead; the
count and list are logged at the end, kept on the builder (`skip_log`) and
stored with the dataset (`info.metadata['skipped']`, metadata.json). A failed
build leaves no dataset behind: TFDS writes into an `incomplete.*` directory
and renames it only on success.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Iterator, NamedTuple, Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from ivid_jax.data import preprocess
from ivid_jax.data.errors import BadExampleError, SkipLog

IMAGE_EXTENSIONS = preprocess.IMAGE_EXTENSIONS
INDEX_FILE = 'dataset.json'
UNLABELLED = -1


class RgbdEntry(NamedTuple):
  """One example's files, relative to the root, and its label (-1: unlabelled)."""
  image: str
  depth: str
  label: int


# ---------------------------------------------------------------------------------------------
# Listing the folder.

def _is_image(name: str) -> bool:
  return preprocess.is_image_file(name)


def _depth_for(image_rel: str) -> str:
  """images/<a>/<b>.JPEG -> depths/<a>/<b>.npz (the authors' naming)."""
  parts = image_rel.split('/')
  return '/'.join(['depths'] + parts[1:-1] + [os.path.splitext(parts[-1])[0] + '.npz'])


def _list_folder(root: str) -> tuple[list[str], dict[str, int] | None]:
  """Sorted relative image paths and, for the ImageNet type, class -> label."""
  image_dir = os.path.join(root, 'images')
  if not os.path.isdir(image_dir):
    raise FileNotFoundError(f'{image_dir}: no images/ folder in the dataset root')
  names = sorted(os.listdir(image_dir))
  classes = [n for n in names if os.path.isdir(os.path.join(image_dir, n))]
  files = [n for n in names if _is_image(n) and os.path.isfile(os.path.join(image_dir, n))]
  if classes and files:
    raise ValueError(f'{image_dir}: holds both class folders {classes[:3]} and images '
                     f'{files[:3]}; expected one layout (images/<class>/<name> or '
                     'images/<name>)')
  if not classes:
    return [f'images/{n}' for n in files], None
  labels = {c: i for i, c in enumerate(classes)}  # sorted folder names, as the authors
  images = []
  for c in classes:
    images += [f'images/{c}/{n}' for n in sorted(os.listdir(os.path.join(image_dir, c)))
               if _is_image(n)]
  return images, labels


def _read_index(root: str) -> tuple[list[str], list[str], dict[str, int] | None]:
  """dataset.json -> (images, depths, labels or None), checked for consistency."""
  path = os.path.join(root, INDEX_FILE)
  try:
    with open(path) as f:
      index = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: cannot read the index ({type(e).__name__}: {e})') from None
  if not isinstance(index, dict) or 'images' not in index or 'depths' not in index:
    raise ValueError(f'{path}: expected a JSON object with "images" and "depths" lists')
  images, depths, labels = index['images'], index['depths'], index.get('labels')
  if len(images) != len(depths):
    raise ValueError(f'{path}: {len(images)} images but {len(depths)} depths')
  if len(set(images)) != len(images):
    dup = next(p for i, p in enumerate(images) if p in images[:i])
    raise ValueError(f'{path}: image {dup} is listed more than once')
  for p in list(images) + list(depths):
    if not isinstance(p, str) or os.path.isabs(p) or '..' in p.split('/'):
      raise ValueError(f'{path}: {p!r} is not a path relative to the dataset root')
  if labels is not None:
    if not isinstance(labels, dict) or not all(isinstance(v, int) for v in labels.values()):
      raise ValueError(f'{path}: "labels" must map class names to integers')
    for p in images:
      if _class_of(p) not in labels:
        raise ValueError(f'{path}: image {p} is in class folder {_class_of(p)!r}, which '
                         '"labels" does not list')
  return list(images), list(depths), labels


def _class_of(image_rel: str) -> str:
  return image_rel.split('/')[-2] if '/' in image_rel else ''


def scan_rgbd_folder(root: str | os.PathLike, write_index: bool = False) -> list[RgbdEntry]:
  """Lists a dataset root: [(image, depth, label)] with paths relative to `root`.

  Uses `root/dataset.json` when present, else lists `images/` in sorted order
  (labels = sorted class folders -> 0..N-1, or -1 for the single-category
  layout). Files are not opened here: a missing or unreadable one is reported
  by `load_example`, so `skip_bad_examples` can count it.

  Args:
    root: the dataset root holding `images/` and `depths/`.
    write_index: write the listing to `root/dataset.json` in the authors' format
      when the root has none (never overwrites).

  Raises:
    FileNotFoundError / ValueError: no `images/` folder, a mixed layout, no
      images at all, or an inconsistent `dataset.json` (the message names it).
  """
  root = os.fspath(root)
  index_path = os.path.join(root, INDEX_FILE)
  if os.path.exists(index_path):
    images, depths, labels = _read_index(root)
  else:
    images, labels = _list_folder(root)
    depths = [_depth_for(p) for p in images]
    if write_index and images:
      index = {'images': images, 'depths': depths}
      if labels is not None:
        index = {'labels': labels, **index}
      with open(index_path, 'w') as f:
        json.dump(index, f)
  if not images:
    raise ValueError(f'{root}: no images found (extensions {IMAGE_EXTENSIONS}, any case)')
  return [RgbdEntry(i, d, UNLABELLED if labels is None else int(labels[_class_of(i)]))
          for i, d in zip(images, depths)]


# ---------------------------------------------------------------------------------------------
# One example.

def load_example(root: str | os.PathLike, entry: RgbdEntry, size: int,
                 depth_mode: str = 'z_buffer') -> dict[str, Any]:
  """Reads one entry -> {'rgb', 'depth', 'label', 'file_name'} (see module docstring).

  Raises:
    BadExampleError: naming the image or depth file and the problem.
  """
  root = os.fspath(root)
  image_path, depth_path = os.path.join(root, entry.image), os.path.join(root, entry.depth)
  image = preprocess.read_image(image_path)
  raw = preprocess.read_depth_npz(depth_path)
  preprocess.check_depth_matches(raw.shape, image.shape, depth_path)
  example = preprocess.rgbd_example(image, raw, size, depth_mode)
  example['label'] = np.int64(entry.label)
  example['file_name'] = entry.image.encode()  # bytes, as TFDS returns string features
  return example


def iter_examples(root: str | os.PathLike, entries: Sequence[RgbdEntry], size: int,
                  depth_mode: str, skip_log: SkipLog | None
                  ) -> Iterator[tuple[int, dict[str, Any]]]:
  """(index, example) for each entry; bad ones raise, or go to `skip_log` if given."""
  for i, entry in enumerate(entries):
    try:
      yield i, load_example(root, entry, size, depth_mode)
    except BadExampleError as e:
      if skip_log is None:
        raise
      skip_log.add(e)


def _report(skip_log: SkipLog, total: int, where: str) -> None:
  if skip_log:
    logging.warning('%s: %d of %d example(s) skipped. %s', where, len(skip_log), total,
                    skip_log.report())
  else:
    logging.info('%s: all %d example(s) read, none skipped', where, total)
  if total and len(skip_log) == total:
    raise ValueError(f'{where}: all {total} examples are bad:\n{skip_log.report()}')


# ---------------------------------------------------------------------------------------------
# A random-access source for small folders and tests.

class RgbdFolderSource:
  """`len` / `[i]` over a dataset root, giving `load_example` dicts (a grain source).

  Examples are decoded on access. With `skip_bad_examples=True` every example is
  read once up front to drop the bad ones (so `len` stays exact); the skips are
  in `skip_log`. Without it a bad example raises `BadExampleError` when accessed.
  """

  def __init__(self, root: str | os.PathLike, size: int = 128, depth_mode: str = 'z_buffer',
               skip_bad_examples: bool = False):
    self.root, self.size, self.depth_mode = os.fspath(root), size, depth_mode
    self.entries = scan_rgbd_folder(self.root)
    self.skip_log = SkipLog()
    if skip_bad_examples:
      good = [i for i, _ in iter_examples(self.root, self.entries, size, depth_mode,
                                          self.skip_log)]
      _report(self.skip_log, len(self.entries), self.root)
      self.entries = [self.entries[i] for i in good]

  def __len__(self) -> int:
    return len(self.entries)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return load_example(self.root, self.entries[index], self.size, self.depth_mode)

  def __repr__(self) -> str:
    return f'RgbdFolderSource({self.root!r}, size={self.size}, n={len(self)})'


# ---------------------------------------------------------------------------------------------
# The TFDS builder.

@dataclasses.dataclass(eq=False)
class RgbdFolderConfig(tfds.core.BuilderConfig):
  """What changes the stored examples; the name is derived from it (see `rgbd_config`)."""
  resolution: int = 128
  depth_mode: str = 'z_buffer'
  holdout_fraction: float = 0.0  # > 0: a deterministic 'validation' split by path hash


def rgbd_config(resolution: int = 128, depth_mode: str = 'z_buffer',
                holdout_fraction: float = 0.0) -> RgbdFolderConfig:
  """The config for these settings: a registered one if it exists, else a new one."""
  if depth_mode not in preprocess.DEPTH_MODES:
    raise ValueError(f'unknown depth mode {depth_mode!r}; expected one of '
                     f'{preprocess.DEPTH_MODES}')
  if not 0.0 <= holdout_fraction < 1.0:
    raise ValueError(f'holdout_fraction must be in [0, 1), got {holdout_fraction}')
  name = f'res{int(resolution)}'
  if depth_mode != 'z_buffer':
    name += f'_{depth_mode}'
  if holdout_fraction:
    name += f'_holdout{holdout_fraction:g}'
  for config in RgbdFolder.BUILDER_CONFIGS:
    if config.name == name:
      return config
  return RgbdFolderConfig(name=name, resolution=int(resolution), depth_mode=depth_mode,
                          holdout_fraction=float(holdout_fraction),
                          description=f'{resolution}px, depth {depth_mode}, '
                                      f'holdout {holdout_fraction:g}')


def in_holdout(image_rel: str, fraction: float) -> bool:
  """Deterministic per-file split: stable when files are added or removed."""
  digest = hashlib.sha256(image_rel.encode()).digest()
  return int.from_bytes(digest[:8], 'big') / 2.0**64 < fraction


class RgbdFolder(tfds.core.GeneratorBasedBuilder):
  """TFDS builder `rgbd_folder` over the authors' images/ + depths/ layout."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  BUILDER_CONFIGS = [
      RgbdFolderConfig(name=f'res{s}', resolution=s, description=f'{s}px, z_buffer depth')
      for s in (128, 32, 64, 256)
  ]  # the first is the default
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Point `manual_dir` (or the builder's `source_dir`) at a dataset root holding
  images/<class>/<name>.JPEG + depths/<class>/<name>.npz (labelled) or
  images/<name>.<ext> + depths/<name>.npz (unlabelled), optionally dataset.json.
  """

  def __init__(self, *, source_dir: str | os.PathLike | None = None,
               resolution: int | None = None, depth_mode: str | None = None,
               holdout_fraction: float | None = None, skip_bad_examples: bool = False,
               file_format: str = 'array_record', **kwargs):
    """As `tfds.core.GeneratorBasedBuilder`, plus:

    Args:
      source_dir: dataset root; if None, the download config's `manual_dir`.
      resolution, depth_mode, holdout_fraction: pick the config (`rgbd_config`);
        or pass `config=` as usual. Defaults 128, 'z_buffer', 0.
      skip_bad_examples: log, count and skip bad examples instead of raising.
      file_format: 'array_record' (the TF-free random-access format).
    """
    if any(v is not None for v in (resolution, depth_mode, holdout_fraction)):
      if kwargs.get('config') is not None:
        raise ValueError('pass either config= or resolution/depth_mode/holdout_fraction')
      kwargs['config'] = rgbd_config(128 if resolution is None else resolution,
                                     depth_mode or 'z_buffer', holdout_fraction or 0.0)
    self.source_dir = None if source_dir is None else os.fspath(source_dir)
    self.skip_bad_examples = skip_bad_examples
    self.skip_log = SkipLog()
    self._root, self._num_entries = None, 0
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.resolution
    return tfds.core.DatasetInfo(
        builder=self,
        description='RGB images with MiDaS depth in the IVID authors\' folder layout.',
        features=tfds.features.FeaturesDict({
            'rgb': tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8),
            'depth': tfds.features.Tensor(shape=(s, s, 1), dtype=np.float32),
            'label': tfds.features.Tensor(shape=(), dtype=np.int64),
            'file_name': tfds.features.Tensor(shape=(), dtype=np.str_),
        }),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    root = self.source_dir or os.fspath(dl_manager.manual_dir)
    entries = scan_rgbd_folder(root)
    self._root, self._num_entries = root, len(entries)
    self.skip_log = SkipLog()
    fraction = self.builder_config.holdout_fraction
    if not fraction:
      return {'train': self._generate_examples(root, entries)}
    held = [in_holdout(e.image, fraction) for e in entries]
    splits = {'train': [e for e, h in zip(entries, held) if not h],
              'validation': [e for e, h in zip(entries, held) if h]}
    for split, split_entries in splits.items():
      if not split_entries:  # TFDS cannot write an empty split
        raise ValueError(f'{root}: holdout_fraction={fraction:g} leaves the {split} split of '
                         f'{len(entries)} example(s) empty')
    return {split: self._generate_examples(root, e) for split, e in splits.items()}

  def _generate_examples(self, root: str, entries: Sequence[RgbdEntry]):
    skip_log = self.skip_log if self.skip_bad_examples else None
    c = self.builder_config
    num_yielded = 0
    for i, example in iter_examples(root, entries, c.resolution, c.depth_mode, skip_log):
      num_yielded += 1
      yield entries[i].image, example
    if not num_yielded:  # else TFDS fails with 'No examples were yielded'
      raise ValueError(f'{root}: all {len(entries)} example(s) of a split are bad; '
                       f'{self.skip_log.report()}')

  def _download_and_prepare(self, dl_manager, download_config=None):
    super()._download_and_prepare(dl_manager, download_config)
    if self._root is None:  # nothing was generated (max_examples_per_split=0)
      return
    # Runs inside TFDS's incomplete.* directory, before dataset_info / metadata.json
    # are written: raising here leaves no dataset behind.
    _report(self.skip_log, self._num_entries, self._root)
    self.info.metadata['source_dir'] = self._root
    self.info.metadata['num_scanned'] = self._num_entries
    self.info.metadata['skipped'] = [{'path': p, 'problem': q} for p, q in self.skip_log.skipped]

  def as_data_source(self, *args, **kwargs):
    # TFDS would return an empty dict for a dataset that was never (or not
    # successfully) prepared, or prepared after this builder was made.
    if not self.is_prepared():
      raise FileNotFoundError(
          f'{self.data_path}: rgbd_folder/{self.builder_config.name} is not prepared; build '
          'it with RgbdFolder(..., source_dir=ROOT).download_and_prepare()')
    if not self.info.splits:  # this builder was made before the data was prepared
      self.info.read_from_directory(self.data_dir)
    return super().as_data_source(*args, **kwargs)
