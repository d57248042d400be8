"""The authors' RGBD folder layout: listing, examples, the TFDS builder and bad input."""

import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from ivid_jax.data import preprocess
from ivid_jax.data import rgbd_folder
from ivid_jax.data.errors import BadExampleError

S = 16  # example resolution in these tests


def _write_pair(root, rel, shape=(24, 32), depth_shape=(12, 16), seed=0, ext='.JPEG'):
  """images/<rel><ext> (random colours) + depths/<rel>.npz (fp16 disparity, authors' scale)."""
  rng = np.random.default_rng(seed)
  image_path = os.path.join(root, 'images', rel + ext)
  depth_path = os.path.join(root, 'depths', rel + '.npz')
  os.makedirs(os.path.dirname(image_path), exist_ok=True)
  os.makedirs(os.path.dirname(depth_path), exist_ok=True)
  pixels = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
  Image.fromarray(pixels).save(image_path, **({} if ext == '.png' else {'quality': 95}))
  disparity = rng.uniform(2000, 20000, depth_shape).astype(np.float16)
  np.savez(depth_path, disparity)
  return image_path, depth_path


def _labelled(root, per_class=2):
  """Classes written in unsorted order; the labels must follow the sorted names."""
  for c, cls in enumerate(['zebra', 'apple', 'mango']):
    for k in range(per_class):
      landscape = k % 2  # both orientations; depth at half the image's resolution
      _write_pair(root, f'{cls}/img{k}', seed=10 * c + k, shape=(24, 32) if landscape else (30, 20),
                  depth_shape=(12, 16) if landscape else (15, 10))
  return root


def _unlabelled(root, n=3):
  for k in range(n):
    _write_pair(root, f'face{k}', seed=100 + k, ext='.png')
  return root


def _expected(image_path, depth_path):
  """The example computed directly from the files (PIL + np.load), not through the module."""
  image = np.asarray(Image.open(image_path).convert('RGB'))
  raw = np.load(depth_path)['arr_0'].astype(np.float32)
  return preprocess.rgbd_example(image, raw, S, 'z_buffer')


# ---------------------------------------------------------------------------------------------
# Listing.

def test_scan_labelled_follows_sorted_class_folders_and_writes_nothing(tmp_path):
  root = _labelled(str(tmp_path))
  entries = rgbd_folder.scan_rgbd_folder(root)
  assert [tuple(e) for e in entries] == [
      ('images/apple/img0.JPEG', 'depths/apple/img0.npz', 0),
      ('images/apple/img1.JPEG', 'depths/apple/img1.npz', 0),
      ('images/mango/img0.JPEG', 'depths/mango/img0.npz', 1),
      ('images/mango/img1.JPEG', 'depths/mango/img1.npz', 1),
      ('images/zebra/img0.JPEG', 'depths/zebra/img0.npz', 2),
      ('images/zebra/img1.JPEG', 'depths/zebra/img1.npz', 2)]
  assert not os.path.exists(os.path.join(root, 'dataset.json'))


def test_scan_unlabelled_gives_label_minus_one(tmp_path):
  root = _unlabelled(str(tmp_path))
  open(os.path.join(root, 'images', 'notes.txt'), 'w').close()  # not an image: not listed
  entries = rgbd_folder.scan_rgbd_folder(root)
  assert [tuple(e) for e in entries] == [
      (f'images/face{k}.png', f'depths/face{k}.npz', -1) for k in range(3)]


def test_write_index_is_the_authors_format_and_is_read_back(tmp_path):
  root = _labelled(str(tmp_path), per_class=1)
  entries = rgbd_folder.scan_rgbd_folder(root, write_index=True)
  with open(os.path.join(root, 'dataset.json')) as f:
    index = json.load(f)
  assert index == {'labels': {'apple': 0, 'mango': 1, 'zebra': 2},
                   'images': [e.image for e in entries], 'depths': [e.depth for e in entries]}
  assert rgbd_folder.scan_rgbd_folder(root) == entries


def test_dataset_json_is_used_as_given(tmp_path):
  root = _labelled(str(tmp_path), per_class=1)
  index = {'labels': {'apple': 7, 'mango': 3, 'zebra': 5},
           'images': ['images/zebra/img0.JPEG', 'images/apple/img0.JPEG'],
           'depths': ['depths/zebra/img0.npz', 'depths/apple/img0.npz']}
  with open(os.path.join(root, 'dataset.json'), 'w') as f:
    json.dump(index, f)
  entries = rgbd_folder.scan_rgbd_folder(root)
  assert [tuple(e) for e in entries] == [
      ('images/zebra/img0.JPEG', 'depths/zebra/img0.npz', 5),
      ('images/apple/img0.JPEG', 'depths/apple/img0.npz', 7)]


@pytest.mark.parametrize('index, problem', [
    ({'images': ['images/a/x.JPEG'], 'depths': []}, '1 images but 0 depths'),
    ({'labels': {'b': 0}, 'images': ['images/a/x.JPEG'], 'depths': ['depths/a/x.npz']},
     "class folder 'a'"),
    ({'images': ['/abs/x.JPEG'], 'depths': ['depths/x.npz']}, 'not a path relative'),
    ({'depths': []}, 'expected a JSON object'),
    ({'images': ['images/x.png'] * 2, 'depths': ['depths/x.npz'] * 2}, 'listed more than once'),
])
def test_inconsistent_dataset_json_is_an_error_naming_it(tmp_path, index, problem):
  with open(tmp_path / 'dataset.json', 'w') as f:
    json.dump(index, f)
  with pytest.raises(ValueError, match='dataset.json') as e:
    rgbd_folder.scan_rgbd_folder(tmp_path)
  assert problem in str(e.value)


def test_mixed_or_empty_layout_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no images/ folder'):
    rgbd_folder.scan_rgbd_folder(tmp_path)
  os.makedirs(tmp_path / 'images')
  with pytest.raises(ValueError, match='no images found'):
    rgbd_folder.scan_rgbd_folder(tmp_path)
  _write_pair(str(tmp_path), 'cls/a')
  _write_pair(str(tmp_path), 'b')
  with pytest.raises(ValueError, match='both class folders'):
    rgbd_folder.scan_rgbd_folder(tmp_path)


# ---------------------------------------------------------------------------------------------
# Examples.

def test_source_examples_equal_rgbd_example_on_the_files(tmp_path):
  root = _labelled(str(tmp_path))
  source = rgbd_folder.RgbdFolderSource(root, size=S)
  assert len(source) == 6
  for i, entry in enumerate(source.entries):
    ex = source[i]
    want = _expected(os.path.join(root, entry.image), os.path.join(root, entry.depth))
    assert ex['rgb'].dtype == np.uint8 and ex['rgb'].shape == (S, S, 3)
    assert ex['depth'].dtype == np.float32 and ex['depth'].shape == (S, S, 1)
    np.testing.assert_array_equal(ex['rgb'], want['rgb'])
    np.testing.assert_array_equal(ex['depth'], want['depth'])
    assert ex['label'] == entry.label and ex['label'].dtype == np.int64
    assert ex['file_name'] == entry.image.encode()
    # Disparities up to 20000 / 6250 > 2 are rescaled so the nearest point is at z = 0; the
    # crop may drop it, but some near point survives.
    assert 0.0 <= ex['depth'].min() < 0.2 and ex['depth'].max() <= 1.0


# ---------------------------------------------------------------------------------------------
# Bad input: each kind raises naming the file and the problem.

def _make_bad(root, kind, name=None):
  """Writes one bad example of `kind`; returns (offending path, expected problem text)."""
  image_path, depth_path = _write_pair(root, name or f'bad_{kind}', shape=(60, 80),
                                       depth_shape=(30, 40), seed=7)
  if kind == 'corrupt_image':
    with open(image_path, 'wb') as f:
      f.write(b'this is not a JPEG at all' * 10)
    return image_path, 'cannot decode image'
  if kind == 'truncated_image':
    with open(image_path, 'rb') as f:
      data = f.read()
    with open(image_path, 'wb') as f:
      f.write(data[:len(data) // 2])
    return image_path, 'truncated'
  if kind == 'missing_depth':
    os.remove(depth_path)
    return depth_path, 'depth file is missing'
  if kind in ('nan_depth', 'inf_depth'):
    d = np.load(depth_path)['arr_0']
    d[3, 4] = np.nan if kind == 'nan_depth' else np.inf
    np.savez(depth_path, d)
    return depth_path, '1 NaN/inf value(s)'
  if kind == 'wrong_aspect_depth':
    np.savez(depth_path, np.full((40, 40), 5000, np.float16))
    return depth_path, 'depth map is 40x40 but its image is 60x80'
  raise ValueError(kind)


BAD_KINDS = ('corrupt_image', 'truncated_image', 'missing_depth', 'nan_depth', 'inf_depth',
             'wrong_aspect_depth')


@pytest.mark.parametrize('kind', BAD_KINDS)
def test_each_bad_kind_raises_naming_file_and_problem(tmp_path, kind):
  root = str(tmp_path)
  _unlabelled(root, n=1)
  path, problem = _make_bad(root, kind)
  source = rgbd_folder.RgbdFolderSource(root, size=S)
  bad = [e.image for e in source.entries].index(f'images/bad_{kind}.JPEG')
  with pytest.raises(BadExampleError) as e:
    source[bad]
  assert e.value.path == path
  assert str(e.value).startswith(path + ': ') and problem in e.value.problem
  source[1 - bad]  # the good one still reads


def test_a_listed_file_that_does_not_exist_is_named(tmp_path):
  root = _unlabelled(str(tmp_path), n=1)
  with open(os.path.join(root, 'dataset.json'), 'w') as f:
    json.dump({'images': ['images/face0.png', 'images/gone.png'],
               'depths': ['depths/face0.npz', 'depths/gone.npz']}, f)
  source = rgbd_folder.RgbdFolderSource(root, size=S)
  with pytest.raises(BadExampleError, match='gone.png: image file is missing'):
    source[1]


def test_source_skip_mode_counts_exactly_the_bad_files(tmp_path):
  root = _unlabelled(str(tmp_path), n=2)
  bad = dict(_make_bad(root, k) for k in BAD_KINDS)
  source = rgbd_folder.RgbdFolderSource(root, size=S, skip_bad_examples=True)
  assert [e.image for e in source.entries] == ['images/face0.png', 'images/face1.png']
  assert len(source.skip_log) == len(BAD_KINDS)
  assert {p: q for p, q in source.skip_log.skipped}.keys() == bad.keys()
  for p, q in source.skip_log.skipped:
    assert bad[p] in q


# ---------------------------------------------------------------------------------------------
# The TFDS builder.

def _by_name(data_source):
  return {data_source[i]['file_name'].decode(): data_source[i] for i in range(len(data_source))}


def test_builder_labelled_matches_the_source_and_resolutions_coexist(tmp_path):
  root = _labelled(str(tmp_path / 'src'))
  data_dir = str(tmp_path / 'tfds')
  builder = rgbd_folder.RgbdFolder(data_dir=data_dir, resolution=S, source_dir=root)
  assert builder.name == 'rgbd_folder' and builder.builder_config.name == f'res{S}'
  builder.download_and_prepare()
  # Read back by a fresh builder that has no source at all.
  ds = rgbd_folder.RgbdFolder(data_dir=data_dir, resolution=S).as_data_source()
  assert set(ds) == {'train'}
  got = _by_name(ds['train'])
  source = rgbd_folder.RgbdFolderSource(root, size=S)
  assert sorted(got) == [e.image for e in source.entries]
  for i, entry in enumerate(source.entries):
    want = source[i]
    for key in ('rgb', 'depth'):
      assert got[entry.image][key].dtype == want[key].dtype
      np.testing.assert_array_equal(got[entry.image][key], want[key])
    assert int(got[entry.image]['label']) == entry.label
  assert builder.info.metadata['skipped'] == [] and builder.info.metadata['num_scanned'] == 6
  # Another resolution, the TFDS manual_dir way, lands beside the first.
  other = tfds.builder('rgbd_folder/res32', data_dir=data_dir)  # a registered config
  other.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  assert other.data_dir != builder.data_dir
  assert other.as_data_source()['train'][0]['rgb'].shape == (32, 32, 3)
  assert len(rgbd_folder.RgbdFolder(data_dir=data_dir, resolution=S).as_data_source()['train']) == 6


def test_builder_fails_on_bad_input_and_leaves_nothing_readable(tmp_path):
  root = _unlabelled(str(tmp_path / 'src'), n=2)
  path, _ = _make_bad(root, 'nan_depth', name='zz_last')  # after good examples were written
  data_dir = tmp_path / 'tfds'
  builder = rgbd_folder.RgbdFolder(data_dir=str(data_dir), resolution=S, source_dir=root)
  with pytest.raises(BadExampleError, match='NaN/inf') as e:
    builder.download_and_prepare()
  assert e.value.path == path
  config_dir = data_dir / 'rgbd_folder' / f'res{S}'
  assert not config_dir.exists() or os.listdir(config_dir) == []  # no version, no incomplete.*
  fresh = rgbd_folder.RgbdFolder(data_dir=str(data_dir), resolution=S)
  assert not fresh.is_prepared()
  with pytest.raises(FileNotFoundError, match='is not prepared'):
    fresh.as_data_source()
  # Once the file is fixed the same build succeeds in the same place.
  np.savez(path, np.full((30, 40), 5000, np.float16))
  builder.download_and_prepare()
  assert len(fresh.as_data_source()['train']) == 3


def test_builder_skip_mode_counts_reports_and_stores_the_skips(tmp_path):
  root = _unlabelled(str(tmp_path / 'src'), n=2)
  bad = dict(_make_bad(root, k) for k in BAD_KINDS)
  data_dir = str(tmp_path / 'tfds')
  builder = rgbd_folder.RgbdFolder(data_dir=data_dir, resolution=S, source_dir=root,
                                   skip_bad_examples=True)
  builder.download_and_prepare()
  assert len(builder.skip_log) == len(BAD_KINDS)
  assert {p for p, _ in builder.skip_log.skipped} == bad.keys()
  fresh = rgbd_folder.RgbdFolder(data_dir=data_dir, resolution=S)
  assert sorted(_by_name(fresh.as_data_source()['train'])) == [
      'images/face0.png', 'images/face1.png']
  stored = fresh.info.metadata
  assert stored['num_scanned'] == 2 + len(BAD_KINDS)
  assert {s['path']: s['problem'] for s in stored['skipped']}.keys() == bad.keys()
  assert int(fresh.info.splits['train'].num_examples) == 2


def test_holdout_split_is_deterministic_and_disjoint(tmp_path):
  names = [f'images/x{k}.png' for k in range(2000)]
  held = [n for n in names if rgbd_folder.in_holdout(n, 0.1)]
  assert held == [n for n in names if rgbd_folder.in_holdout(n, 0.1)]
  assert 160 < len(held) < 240
  # A larger fraction holds out a superset: adding held-out data never moves files back.
  assert set(held) <= {n for n in names if rgbd_folder.in_holdout(n, 0.3)}
  config = rgbd_folder.rgbd_config(64, 'disparity_minmax', 0.05)
  assert config.name == 'res64_disparity_minmax_holdout0.05'
  assert rgbd_folder.rgbd_config(128) is rgbd_folder.RgbdFolder.BUILDER_CONFIGS[0]
  with pytest.raises(ValueError, match='unknown depth mode'):
    rgbd_folder.rgbd_config(64, 'zbuffer')


def test_builder_holdout_split_follows_in_holdout(tmp_path):
  root = _unlabelled(str(tmp_path / 'src'), n=4)
  names = [f'images/face{k}.png' for k in range(4)]
  held = {n for n in names if rgbd_folder.in_holdout(n, 0.5)}
  assert 0 < len(held) < 4  # fixed by the hash of the names
  builder = rgbd_folder.RgbdFolder(data_dir=str(tmp_path / 'tfds'), resolution=S,
                                   holdout_fraction=0.5, source_dir=root)
  assert builder.builder_config.name == f'res{S}_holdout0.5'
  builder.download_and_prepare()
  ds = builder.as_data_source()
  assert set(_by_name(ds['validation'])) == held
  assert set(_by_name(ds['train'])) == set(names) - held


def test_builder_all_bad_or_empty_split_is_a_clear_error(tmp_path):
  root = str(tmp_path / 'src')
  path, _ = _make_bad(root, 'corrupt_image')
  builder = rgbd_folder.RgbdFolder(data_dir=str(tmp_path / 'tfds'), resolution=S,
                                   source_dir=root, skip_bad_examples=True)
  with pytest.raises(ValueError, match='all 1 example') as e:
    builder.download_and_prepare()
  assert path in str(e.value)
  builder = rgbd_folder.RgbdFolder(data_dir=str(tmp_path / 'tfds'), resolution=S,
                                   holdout_fraction=0.01, source_dir=root)
  with pytest.raises(ValueError, match='leaves the validation split of 1 example'):
    builder.download_and_prepare()
  with pytest.raises(FileNotFoundError, match='is not prepared'):
    rgbd_folder.RgbdFolder(data_dir=str(tmp_path / 'tfds'), resolution=S).as_data_source()
