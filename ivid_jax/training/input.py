"""The training data named by `config.input`: a random-access RGBD source for the grain loader.

  dataset='synthetic_rgbd'  procedural scenes (TFDS config e.g. 'r32'), built on first use
  dataset='imagenet_rgbd'   ImageNet + depth (TFDS config e.g. '128px_z_buffer'), prepared
                            beforehand with `data.imagenet.ImagenetRgbd`
  dataset='rgbd_folder'     the authors' images/ + depths/ layout at `root`, read directly
  dataset='random_smooth'   `num_examples` random smooth scenes in memory (tests, benchmarks)

Multi-view examples (synthetic_rgbd) are seen through `config.input.view`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from absl import logging

from ivid_jax.data import pipeline
from ivid_jax.models import unet

DATASETS = ('synthetic_rgbd', 'imagenet_rgbd', 'rgbd_folder', 'random_smooth')


def _tfds_source(name: str, tfds_config: Any, data_dir: str, split: str, build: bool):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if name == 'synthetic_rgbd':
    from ivid_jax.data import synthetic_rgbd  # pylint: disable=g-import-not-at-top,unused-import
  else:
    from ivid_jax.data import imagenet  # pylint: disable=g-import-not-at-top,unused-import
  builder = tfds.builder(name, config=tfds_config or None, data_dir=data_dir or None)
  if not builder.is_prepared():
    if not build:
      raise FileNotFoundError(
          f'{builder.data_path}: {name}/{builder.builder_config.name} is not prepared. Build it '
          'once (see ivid_jax/data/imagenet.py: ImagenetRgbd(...).download_and_prepare()) or set '
          '--config.input.data_dir to where it is.')
    # Only process 0 builds; the others wait for it (a shared filesystem is assumed).
    if jax.process_index() == 0:
      logging.info('building %s/%s in %s (first use)', name, builder.builder_config.name,
                   builder.data_dir)
      print(f'Building {name}/{builder.builder_config.name} in {builder.data_dir} (first use; '
            'once per machine)...', flush=True)
      tfds.display_progress_bar(True)
      builder.download_and_prepare(file_format='array_record')
    _sync('dataset built')
    builder = tfds.builder(name, config=tfds_config or None, data_dir=data_dir or None)
  return builder.as_data_source(split=split)


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def make_source(*, dataset: str, image_size: int, tfds_config: Any = '', data_dir: str = '',
                split: str = 'train', root: str = '', view: int = 0, num_examples: int = 0,
                seed: int = 0, **unused: Any) -> pipeline.Source:
  """The source of `config.input` (fields as keyword arguments; see the module docstring).

  tfds_config is a builder config name ('r32') or a BuilderConfig object.

  Raises:
    ValueError for an unknown dataset or examples of the wrong size;
    FileNotFoundError for data that is not there.
  """
  del unused
  if dataset == 'random_smooth':
    if num_examples <= 0:
      raise ValueError('input.num_examples must be > 0 for the random_smooth dataset')
    source = pipeline.random_smooth_source(num_examples, image_size, seed=seed)
  elif dataset == 'rgbd_folder':
    if not root or not os.path.isdir(root):
      raise FileNotFoundError(f'input.root={root!r}: not a folder (the dataset root holding '
                              'images/ and depths/)')
    from ivid_jax.data import rgbd_folder  # pylint: disable=g-import-not-at-top
    source = rgbd_folder.RgbdFolderSource(root, size=image_size)
  elif dataset in ('synthetic_rgbd', 'imagenet_rgbd'):
    source = _tfds_source(dataset, tfds_config, data_dir, split,
                          build=dataset == 'synthetic_rgbd')
    source = pipeline.FirstView(source, view)
  else:
    raise ValueError(f'input.dataset must be one of {DATASETS}, got {dataset!r}')
  check_resolution(source, image_size)
  return source


def source_labels(source: pipeline.Source) -> np.ndarray | None:
  """The distinct labels a source can give (None where it cannot say without reading it all).

  TFDS builders give their label feature's class count; in-memory and folder sources
  their label lists. Unlabelled examples carry pipeline.NO_LABEL (-1).
  """
  inner = source.source if isinstance(source, pipeline.FirstView) else source
  info = getattr(inner, 'dataset_info', None)
  if info is not None:
    if 'label' not in info.features.keys():
      return np.array([pipeline.NO_LABEL])
    feature = info.features['label']
    return np.arange(feature.num_classes) if hasattr(feature, 'num_classes') else None
  if isinstance(inner, pipeline.ArraySource):
    return (np.array([pipeline.NO_LABEL]) if inner.labels is None
            else np.unique(np.asarray(inner.labels)))
  entries = getattr(inner, 'entries', None)
  if entries is not None:
    return np.unique([e.label for e in entries]) if entries else np.zeros((0,), int)
  return None


def check_labels(source: pipeline.Source, dataset: str, num_classes: int | None,
                 has_null_class: bool) -> None:
  """The dataset's labels must fit the model's class table (jitted code cannot check them).

  Raises:
    ValueError naming the dataset and the labels that do not fit.
  """
  labels = source_labels(source)
  if num_classes is None or labels is None or not labels.size:
    return
  try:
    unet.check_labels(labels, num_classes, has_null_class)
  except ValueError as e:
    raise ValueError(f'input.dataset={dataset!r} ({source!r}): {e}; set model.num_classes '
                     'and model.has_null_class to fit the data') from None


def check_resolution(source: pipeline.Source, image_size: int) -> None:
  """The examples must have the model's size (the loader does not resize)."""
  size = source[0]['rgb'].shape[0]
  if size != image_size:
    raise ValueError(f'{source!r}: examples are {size} px but the model is {image_size} px '
                     '(model.image_size); pick the dataset config of that resolution')
