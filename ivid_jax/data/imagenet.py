"""ImageNet 2012 joined with the authors' MiDaS depth maps into RGBD examples (reference 1.1-1.4).

Two ways in, both TensorFlow-free and both preprocessing exactly as `preprocess.rgbd_example`
(Lanczos shorter side + centre crop for colour, nearest for depth, the depth modes, z-buffer with
near 0.5 / far 100 by default):

- `ImagenetDepthSource`: random access (`len` / `[i]`) over any source of decoded ImageNet
  examples {'image' uint8 [H, W, C], 'label' int, 'file_name'}, e.g.
  `tfds.data_source('imagenet2012', split=...)` on an array_record imagenet2012 (prepared once by
  someone with TensorFlow, `file_format='array_record'`), joined with a depth directory.
- `ImagenetRgbd`: a TFDS builder (`imagenet_rgbd`) that reads the official archives
  `ILSVRC2012_img_train.tar` / `ILSVRC2012_img_val.tar` straight from a manual dir (streamed with
  `tarfile`, nothing extracted), joins the depth directory and writes preprocessed examples
  {'rgb' uint8 [S, S, 3], 'depth' float32 [S, S, 1], 'label', 'file_name'} as array_record.

Depth directory layout (one root per split, or one root for both):
- `<depth_dir>/<synset>/<stem>.npz`, the authors' layout,
  e.g. `depths/n01440764/n01440764_10026.npz`.
  The synset is the file name's `n<8 digits>_` prefix (train names) or, for names without one
  (validation names such as `ILSVRC2012_val_00000001.JPEG`), the synset of the example's label in
  TFDS's `labels.txt`: so validation depths may sit in synset folders like the training ones.
- `<depth_dir>/<stem>.npz`, flat: e.g. pass `depth_dir=depths/val` for `depths/val/<stem>.npz`.
  ImageNet file names are unique across synsets, so a flat folder is unambiguous; a name found in
  both places is an error rather than a guess.
Each `.npz` holds one fp16 disparity map (`arr_0`, the authors' scale: divided by 6250 on load)
with its image's aspect ratio.

Labels are TFDS's: the index of the synset in TFDS's `datasets/imagenet2012/labels.txt`;
validation labels come from the `validation_labels.txt` shipped beside it, assigned to the val
archive's file names in sorted order, exactly as TFDS's imagenet2012 builder does.

Bad examples (missing/unreadable depth, NaN/inf, wrong aspect ratio, undecodable image) raise
`errors.BadExampleError` naming the file. With `skip_bad_examples=True` they are logged, counted in
a `SkipLog` and reported; see `ImagenetDepthSource` for how a random-access source skips.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tarfile
from typing import Any, Iterator, Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from ivid_jax.data import errors
from ivid_jax.data import preprocess

TRAIN_TAR = 'ILSVRC2012_img_train.tar'
VAL_TAR = 'ILSVRC2012_img_val.tar'
_LABELS_FILE = 'datasets/imagenet2012/labels.txt'
_VALIDATION_LABELS_FILE = 'datasets/imagenet2012/validation_labels.txt'


# ---------------------------------------------------------------------------------------------
# Labels and the depth directory.

def labels_file() -> str:
  """Path of TFDS's synset list (one synset a line; the line number is the label)."""
  return os.fspath(tfds.core.tfds_path(_LABELS_FILE))


@functools.cache
def synsets() -> tuple[str, ...]:
  """TFDS's 1000 synsets in label order."""
  return tuple(tfds.core.tfds_path(_LABELS_FILE).read_text().strip().splitlines())


@functools.cache
def synset_to_label() -> dict[str, int]:
  return {s: i for i, s in enumerate(synsets())}


def validation_synsets(val_names: Sequence[str]) -> dict[str, str]:
  """Val file names -> synsets, as TFDS's `imagenet_common.get_validation_labels`.

  TFDS's shipped list gives the synsets of the 50,000 val images in sorted file-name order.
  """
  shipped = tfds.core.tfds_path(_VALIDATION_LABELS_FILE).read_text().strip().splitlines()
  names = sorted(val_names)
  if len(names) > len(shipped):
    raise ValueError(f'{len(names)} validation images but TFDS ships only {len(shipped)} labels')
  if len(names) != len(shipped):
    logging.warning('Validation archive holds %d images, not %d: labels are assigned by sorted '
                    'name, as TFDS does, and are only right for the official archive.',
                    len(names), len(shipped))
  return dict(zip(names, shipped))


def to_str(value: Any) -> str:
  """A file name as TFDS gives it (str, bytes or a 0-d array) -> str."""
  if isinstance(value, np.ndarray):
    value = value.item()
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def find_depth(depth_dir: str | os.PathLike, file_name: str, label: int | None = None) -> str:
  """Path of the depth map for an ImageNet file name (module docstring: the layout).

  Raises BadExampleError naming the path(s) looked for if there is none, or both.
  """
  stem = os.path.splitext(os.path.basename(file_name))[0]
  synset = preprocess.synset_of(stem)
  if synset is None and label is not None and 0 <= int(label) < len(synsets()):
    synset = synsets()[int(label)]
  flat = os.path.join(depth_dir, stem + '.npz')
  by_synset = os.path.join(depth_dir, synset, stem + '.npz') if synset else None
  found = [p for p in (by_synset, flat) if p is not None and os.path.exists(p)]
  if len(found) == 1:
    return found[0]
  if found:
    raise errors.BadExampleError(
        by_synset, f'depth for {file_name} exists both here and at {flat}: ambiguous, keep one')
  also = f' (nor at {flat})' if by_synset else ''
  raise errors.BadExampleError(by_synset or flat, f'depth file for {file_name} is missing{also}')


def rgbd_from_image(image: np.ndarray, depth_path: str, size: int, mode: str,
                    raw_depth: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Decoded image [H, W, C] + its depth file -> {'rgb' uint8 [S,S,3], 'depth' float32 [S,S,1]}.

  Checks what `rgbd_example` does not: the depth is finite (on read) and has the image's aspect.
  """
  if raw_depth is None:
    raw_depth = preprocess.read_depth_npz(depth_path)
  preprocess.check_depth_matches(raw_depth.shape, np.shape(image), depth_path)
  return preprocess.rgbd_example(image, raw_depth, size, mode)


def _check_mode(size: int, mode: str) -> None:
  if mode not in preprocess.DEPTH_MODES:
    raise ValueError(f'unknown depth mode {mode!r}; expected one of {preprocess.DEPTH_MODES}')
  if size < 1:
    raise ValueError(f'size must be positive, got {size}')


# ---------------------------------------------------------------------------------------------
# Random access over decoded ImageNet (e.g. tfds.data_source('imagenet2012')).

class ImagenetDepthSource:
  """Random-access RGBD ImageNet: a source of decoded examples joined with a depth directory.

  `source[i]` must give {'image' uint8 [H, W, C], 'label' int, 'file_name' str|bytes} (what
  `tfds.data_source('imagenet2012', ...)` gives). `self[i]` is {'rgb' uint8 [S, S, 3], 'depth'
  float32 [S, S, 1] (the `depth_mode` channel, z-buffer in [0, 1] by default), 'label' int64,
  'file_name' str}; `preprocess.to_model_input` maps it to x0 in [-1, 1].

  Skipping: a random-access source cannot drop an index on the fly (a sampler has already chosen
  it, and silently substituting another example would skew the data). So with
  `skip_bad_examples=True` the constructor runs `validate()`, which loads every example once
  (decode, depth read, preprocessing: as slow as one epoch), logs and counts the bad ones in
  `self.skip_log`, and indexes only the good ones: `len(self)` is the number of good examples. For
  the full 1.28M images prefer building `ImagenetRgbd` once, which skips while streaming. Without
  the option, a bad example raises BadExampleError naming the file and the problem.
  """

  def __init__(self, source: Any, depth_dir: str | os.PathLike, *, size: int = 128,
               depth_mode: str = 'z_buffer', skip_bad_examples: bool = False):
    _check_mode(size, depth_mode)
    if not os.path.isdir(depth_dir):
      raise errors.BadExampleError(depth_dir, 'depth directory does not exist')
    self.source = source
    self.depth_dir = os.fspath(depth_dir)
    self.size = size
    self.depth_mode = depth_mode
    self.skip_bad_examples = skip_bad_examples
    self.skip_log = errors.SkipLog()
    self._good: np.ndarray | None = None
    if skip_bad_examples:
      self._good, self.skip_log = self.validate()
      logging.info('ImagenetDepthSource: %d of %d examples usable; %s',
                   len(self._good), len(source), self.skip_log.report())

  @classmethod
  def from_tfds(cls, split: str, depth_dir: str | os.PathLike, *, data_dir: str | None = None,
                **kwargs) -> ImagenetDepthSource:
    """Over `tfds.data_source('imagenet2012', split=split, data_dir=data_dir)` (array_record)."""
    return cls(tfds.data_source('imagenet2012', split=split, data_dir=data_dir), depth_dir,
               **kwargs)

  def __len__(self) -> int:
    return len(self.source) if self._good is None else len(self._good)

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    n = len(self)
    if not -n <= index < n:
      raise IndexError(f'index {index} out of range for {n} examples')
    index %= n
    return self.load(index if self._good is None else int(self._good[index]))

  def load(self, source_index: int) -> dict[str, Any]:
    """The example at an index of the underlying source; BadExampleError if it is unusable."""
    raw = self.source[source_index]
    file_name = to_str(raw['file_name'])
    label = int(np.asarray(raw['label']))
    depth_path = find_depth(self.depth_dir, file_name, label)
    example = rgbd_from_image(np.asarray(raw['image']), depth_path, self.size, self.depth_mode)
    return {**example, 'label': np.int64(label), 'file_name': file_name}

  def validate(self) -> tuple[np.ndarray, errors.SkipLog]:
    """Loads every source example: (int64 indices of the good ones, SkipLog of the bad ones)."""
    log = errors.SkipLog()
    good = []
    for i in range(len(self.source)):
      try:
        self.load(i)
      except errors.BadExampleError as e:
        log.add(e)
      else:
        good.append(i)
    return np.asarray(good, np.int64), log


# ---------------------------------------------------------------------------------------------
# The TFDS builder over the official archives.

@dataclasses.dataclass(eq=False)
class ImagenetRgbdConfig(tfds.core.BuilderConfig):
  """Output resolution S (pixels) and depth preprocessing mode (`preprocess.DEPTH_MODES`)."""
  size: int = 128
  depth_mode: str = 'z_buffer'


def make_config(size: int = 128, depth_mode: str = 'z_buffer') -> ImagenetRgbdConfig:
  """A config named `<size>px_<mode>`, e.g. `128px_z_buffer` (the authors' ImageNet-128)."""
  _check_mode(size, depth_mode)
  return ImagenetRgbdConfig(name=f'{size}px_{depth_mode}', size=size, depth_mode=depth_mode,
                            description=f'{size}x{size} RGBD, depth mode {depth_mode}')


class ImagenetRgbd(tfds.core.GeneratorBasedBuilder):
  """ImageNet 2012 + MiDaS depth, preprocessed to S x S RGBD (TF-free; array_record only).

  Build with
    builder = ImagenetRgbd(config=make_config(128), data_dir=DATA, file_format='array_record',
                           depth_dir=DEPTHS)  # default depth_dir: <manual_dir>/depths
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=MANUAL))
    train = builder.as_data_source(split='train')
  Generation is one process: about 10 ms an example at 128 px on this CPU (a 500x375 JPEG and a
  384x512 depth map), so about 3.5 h for the 1.28M training images. The 22 CMYK JPEGs are
  converted by PIL and the one PNG is decoded as is, where TFDS re-encodes them through TF, so
  those 23 images can differ slightly from TFDS's imagenet2012; all others are the same bytes.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  # 128: the authors' ImageNet models; 256: their super-resolution target. Any other size/mode:
  # `ImagenetRgbd(config=make_config(size, mode), ...)`.
  BUILDER_CONFIGS = [make_config(128, 'z_buffer'), make_config(64, 'z_buffer'),
                     make_config(256, 'z_buffer')]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  manual_dir should contain {TRAIN_TAR} and/or {VAL_TAR} (both are read if present; TFDS's
  imagenet2012 layout) and, unless `depth_dir` is given, a `depths/` folder of the authors'
  MiDaS maps: depths/<synset>/<stem>.npz (or flat depths/<stem>.npz).
  """

  def __init__(self, *, depth_dir: str | os.PathLike | None = None,
               skip_bad_examples: bool = False, **kwargs):
    super().__init__(**kwargs)
    self._depth_dir = depth_dir
    self._skip_bad_examples = skip_bad_examples
    self.skip_log = errors.SkipLog()

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            # zlib: stored raw, the float32 depth would cost 4 bytes a pixel.
            'rgb': tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8, encoding='zlib'),
            'depth': tfds.features.Tensor(shape=(s, s, 1), dtype=np.float32, encoding='zlib'),
            'label': tfds.features.ClassLabel(names_file=labels_file()),
            'file_name': tfds.features.Text(),  # e.g. 'n01440764_10026.JPEG'
        }),
        homepage='https://github.com/JeffreyXiang/ivid',
    )

  def _split_generators(self, dl_manager):
    manual = os.fspath(dl_manager.manual_dir)
    depth_dir = os.fspath(self._depth_dir or os.path.join(manual, 'depths'))
    if not os.path.isdir(depth_dir):
      raise errors.BadExampleError(depth_dir, 'depth directory does not exist')
    splits = {}
    train, val = os.path.join(manual, TRAIN_TAR), os.path.join(manual, VAL_TAR)
    if os.path.exists(train):
      splits['train'] = self._generate_examples(archive=train, depth_dir=depth_dir, val=False)
    if os.path.exists(val):
      splits['validation'] = self._generate_examples(archive=val, depth_dir=depth_dir, val=True)
    if not splits:
      raise FileNotFoundError(f'{manual}: neither {TRAIN_TAR} nor {VAL_TAR} is there.\n'
                              f'{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    return splits

  def _generate_examples(self, archive: str, depth_dir: str, val: bool):
    if val:
      with tarfile.open(archive, mode='r:*') as tar:  # headers only: seeks past the data
        names = validation_synsets([m.name for m in tar.getmembers() if m.isfile()])
      images = ((name, data, names[name]) for name, data in _iter_val(archive))
    else:
      images = _iter_train(archive)
    size, mode = self.builder_config.size, self.builder_config.depth_mode
    index = synset_to_label()
    log = errors.SkipLog()
    for file_name, data, synset in images:
      image_path = f'{archive}/{file_name}'
      try:
        if synset not in index:
          raise errors.BadExampleError(image_path, f'synset {synset!r} is not in {labels_file()}')
        depth_path = find_depth(depth_dir, file_name, index[synset])
        example = rgbd_from_image(preprocess.decode_image(data, image_path), depth_path, size,
                                  mode)
      except errors.BadExampleError as e:
        if not self._skip_bad_examples:
          raise
        log.add(e)
        continue
      yield file_name, {**example, 'label': synset, 'file_name': file_name}
    self.skip_log.skipped.extend(log.skipped)
    logging.info('imagenet_rgbd %s: %s', os.path.basename(archive), log.report())


def _iter_train(path: str) -> Iterator[tuple[str, bytes, str]]:
  """(file name, JPEG bytes, synset) from the train tar of per-synset tars, streamed."""
  with tarfile.open(path, mode='r|*') as outer:
    for member in outer:
      if not member.isfile():
        continue
      if not member.name.endswith('.tar'):
        raise errors.BadExampleError(f'{path}/{member.name}', 'expected a per-synset .tar')
      synset = os.path.basename(member.name)[:-len('.tar')]  # 'n01440764.tar'
      with tarfile.open(fileobj=outer.extractfile(member), mode='r|*') as inner:
        for image in inner:
          if image.isfile():
            yield os.path.basename(image.name), inner.extractfile(image).read(), synset


def _iter_val(path: str) -> Iterator[tuple[str, bytes]]:
  """(file name, JPEG bytes) from the flat val tar, streamed."""
  with tarfile.open(path, mode='r|*') as tar:
    for member in tar:
      if member.isfile():
        yield member.name, tar.extractfile(member).read()

