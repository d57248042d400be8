"""ImageNet + depth: the source over mock TFDS data and the builder over fake archives."""

import io
import os
import tarfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from ivid_jax.data import errors
from ivid_jax.data import imagenet
from ivid_jax.data import preprocess


def _disparity(shape, seed):
  """A fp16 map at the authors' scale (stored disparity ~ 6250 / D), max beyond the D = 0.5 cap."""
  rng = np.random.default_rng(seed)
  return (rng.uniform(50.0, 14000.0, shape)).astype(np.float16)


def _save_depth(path, depth):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(path, depth)


def _depths_for_source(source, depth_dir, scale=2):
  """Writes depths/<synset of label>/<stem>.npz (scale x the image size) for every example."""
  truth = {}
  for i in range(len(source)):
    ex = source[i]
    name, label = imagenet.to_str(ex['file_name']), int(ex['label'])
    h, w = ex['image'].shape[:2]
    depth = _disparity((h * scale, w * scale), seed=i)
    _save_depth(os.path.join(depth_dir, imagenet.synsets()[label],
                             os.path.splitext(name)[0] + '.npz'), depth)
    truth[i] = (ex['image'], depth.astype(np.float32), label, name)
  return truth


def test_source_matches_direct_preprocessing(tmp_path):
  with tfds.testing.mock_data(num_examples=4):
    raw = tfds.data_source('imagenet2012', split='train')
    truth = _depths_for_source(raw, tmp_path / 'depths')
    source = imagenet.ImagenetDepthSource(raw, tmp_path / 'depths', size=128)
    assert len(source) == 4
    for i, (image, depth, label, name) in truth.items():
      ex = source[i]
      want = preprocess.rgbd_example(image, depth, 128, 'z_buffer')
      assert ex['rgb'].shape == (128, 128, 3) and ex['rgb'].dtype == np.uint8
      assert ex['depth'].shape == (128, 128, 1) and ex['depth'].dtype == np.float32
      np.testing.assert_array_equal(ex['rgb'], want['rgb'])
      np.testing.assert_array_equal(ex['depth'], want['depth'])
      assert ex['label'] == label and ex['file_name'] == name
      x0 = preprocess.to_model_input(ex['rgb'], ex['depth'])
      assert x0.shape == (128, 128, 4) and x0.min() >= -1.0 and x0.max() <= 1.0
      assert x0[..., 3].min() < 0.0  # the nearest point (disparity max -> D = 0.5) is near -1
    assert source[-1]['file_name'] == truth[3][3]
    with pytest.raises(IndexError):
      source[4]


def test_depth_modes_pass_through(tmp_path):
  with tfds.testing.mock_data(num_examples=1):
    raw = tfds.data_source('imagenet2012', split='train')
    image, depth, _, _ = _depths_for_source(raw, tmp_path)[0]
    for mode in ('none', 'depth_minmax'):
      ex = imagenet.ImagenetDepthSource(raw, tmp_path, size=16, depth_mode=mode)[0]
      want = preprocess.rgbd_example(image, depth, 16, mode)['depth']
      np.testing.assert_array_equal(ex['depth'], want)
    with pytest.raises(ValueError, match='unknown depth mode'):
      imagenet.ImagenetDepthSource(raw, tmp_path, depth_mode='zbuffer')


def test_flat_layout_and_val_names(tmp_path):
  # A val-style name without a synset prefix: found flat, or in the label's synset folder.
  image = np.zeros((20, 30, 3), np.uint8)
  raw = [{'image': image, 'label': np.int64(1), 'file_name': b'ILSVRC2012_val_00000001.JPEG'}]
  _save_depth(str(tmp_path / 'flat' / 'ILSVRC2012_val_00000001.npz'), _disparity((20, 30), 0))
  ex = imagenet.ImagenetDepthSource(raw, tmp_path / 'flat', size=8)[0]
  assert ex['file_name'] == 'ILSVRC2012_val_00000001.JPEG' and ex['label'] == 1
  synset = imagenet.synsets()[1]
  _save_depth(str(tmp_path / 'flat' / synset / 'ILSVRC2012_val_00000001.npz'),
              _disparity((20, 30), 0))
  with pytest.raises(errors.BadExampleError, match='ambiguous'):
    imagenet.ImagenetDepthSource(raw, tmp_path / 'flat', size=8)[0]


def test_missing_depth_names_the_path(tmp_path):
  with tfds.testing.mock_data(num_examples=2):
    raw = tfds.data_source('imagenet2012', split='train')
    name, label = imagenet.to_str(raw[0]['file_name']), int(raw[0]['label'])
    source = imagenet.ImagenetDepthSource(raw, tmp_path)
    with pytest.raises(errors.BadExampleError) as e:
      source[0]
  want = os.path.join(tmp_path, imagenet.synsets()[label], os.path.splitext(name)[0] + '.npz')
  assert e.value.path == want
  assert name in str(e.value) and 'missing' in str(e.value)


def test_bad_depths_raise_or_are_skipped_and_counted(tmp_path):
  with tfds.testing.mock_data(num_examples=4):
    raw = tfds.data_source('imagenet2012', split='train')
    truth = _depths_for_source(raw, tmp_path)
    names = {i: t[3] for i, t in truth.items()}
    path = lambda i: os.path.join(tmp_path, imagenet.synsets()[truth[i][2]],
                                  os.path.splitext(names[i])[0] + '.npz')
    h, w = truth[1][0].shape[:2]
    _save_depth(path(1), np.full((h, w), np.nan, np.float16))
    _save_depth(path(2), _disparity((h + 40, 3 * w + 7), 0))  # not the image's aspect ratio
    os.remove(path(3))
    strict = imagenet.ImagenetDepthSource(raw, tmp_path, size=16)
    with pytest.raises(errors.BadExampleError, match='NaN'):
      strict[1]
    with pytest.raises(errors.BadExampleError, match='aspect'):
      strict[2]
    skipping = imagenet.ImagenetDepthSource(raw, tmp_path, size=16, skip_bad_examples=True)
    assert len(skipping) == 1 and skipping[0]['file_name'] == names[0]
    assert len(skipping.skip_log) == 3
    assert sorted(p for p, _ in skipping.skip_log.skipped) == sorted(path(i) for i in (1, 2, 3))
    assert 'skipped 3' in skipping.skip_log.report()


# ---------------------------------------------------------------------------------------------
# The builder over a fake manual dir of official-style archives.

def _jpeg(shape, seed):
  rng = np.random.default_rng(seed)
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buf, format='JPEG')
  return buf.getvalue()


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _fake_manual_dir(root):
  """ILSVRC2012_img_train.tar (2 synset tars, 3 + 2 JPEGs), ILSVRC2012_img_val.tar (2), depths/.

  Val labels are TFDS's shipped ones for the sorted names, so the 2 val images get its first two.
  """
  manual, jpegs, depths = root / 'manual', {}, root / 'manual' / 'depths'
  manual.mkdir()
  train = {'n01440764': 3, 'n02102040': 2}
  shapes = [(24, 40, 3), (40, 30, 3), (33, 33, 3), (20, 50), (36, 28, 3)]  # (20, 50): grayscale
  k = 0
  with tarfile.open(manual / imagenet.TRAIN_TAR, 'w') as outer:
    for synset, count in train.items():
      inner_buf = io.BytesIO()
      with tarfile.open(fileobj=inner_buf, mode='w') as inner:
        for j in range(count):
          name = f'{synset}_{100 + j}.JPEG'
          jpegs[name] = (_jpeg(shapes[k], k), synset)
          _add(inner, name, jpegs[name][0])
          _save_depth(str(depths / synset / f'{synset}_{100 + j}.npz'),
                      _disparity(shapes[k][:2], k))
          k += 1
      _add(outer, f'{synset}.tar', inner_buf.getvalue())
  shipped = tfds.core.tfds_path('datasets/imagenet2012/validation_labels.txt').read_text().split()
  with tarfile.open(manual / imagenet.VAL_TAR, 'w') as tar:
    for j, shape in enumerate([(30, 45, 3), (45, 30, 3)]):  # added out of sorted order
      name = f'ILSVRC2012_val_0000000{2 - j}.JPEG'
      jpegs[name] = (_jpeg(shape, 10 + j), shipped[1 - j])
      _add(tar, name, jpegs[name][0])
      # Flat beside the train synset folders: found by the flat fallback.
      _save_depth(str(depths / f'ILSVRC2012_val_0000000{2 - j}.npz'), _disparity(shape[:2], 10 + j))
  return manual, jpegs


def _build(root, manual, **kwargs):
  builder = imagenet.ImagenetRgbd(config=imagenet.make_config(32), data_dir=str(root / 'data'),
                                  file_format='array_record', **kwargs)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  return builder


def test_builder_reads_archives_and_matches_tfds_labels(tmp_path):
  manual, jpegs = _fake_manual_dir(tmp_path)
  builder = _build(tmp_path, manual)
  assert builder.name == 'imagenet_rgbd'
  tfds_labels = tfds.builder('imagenet2012').info.features['label']
  counts = {}
  for split in ('train', 'validation'):
    ds = builder.as_data_source(split=split)
    counts[split] = len(ds)
    for i in range(len(ds)):
      ex = ds[i]
      name = imagenet.to_str(ex['file_name'])
      data, synset = jpegs[name]
      assert int(ex['label']) == tfds_labels.str2int(synset)
      image = preprocess.decode_image(data, name)
      depth = preprocess.read_depth_npz(imagenet.find_depth(manual / 'depths', name, ex['label']))
      want = preprocess.rgbd_example(image, depth, 32, 'z_buffer')
      assert ex['rgb'].shape == (32, 32, 3) and ex['depth'].shape == (32, 32, 1)
      np.testing.assert_array_equal(ex['rgb'], want['rgb'])
      np.testing.assert_array_equal(ex['depth'], want['depth'])
  assert counts == {'train': 5, 'validation': 2}
  assert tfds_labels.str2int('n01440764') == 0  # the first synset of TFDS's list


def test_builder_missing_depth_raises_or_skips(tmp_path):
  manual, _ = _fake_manual_dir(tmp_path)
  os.remove(manual / imagenet.VAL_TAR)
  missing = manual / 'depths' / 'n02102040' / 'n02102040_101.npz'
  os.remove(missing)
  with pytest.raises(errors.BadExampleError, match='n02102040_101.JPEG') as e:
    _build(tmp_path / 'strict', manual)
  assert e.value.path == str(missing)
  builder = _build(tmp_path / 'skip', manual, skip_bad_examples=True)
  assert len(builder.as_data_source(split='train')) == 4
  assert [p for p, _ in builder.skip_log.skipped] == [str(missing)]
