"""`ivid-jax estimate-depth`: the authors' depth format, resuming, bad files, TFDS, the CLI."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from ivid_jax.data import errors
from ivid_jax.data import estimate_depth as ed
from ivid_jax.data import preprocess

# (relative path, height, width): two sizes, two class folders, mixed formats.
_IMAGES = [('n001/a.JPEG', 20, 30), ('n001/b.png', 20, 30), ('n002/c.jpg', 17, 9),
           ('n002/d.png', 20, 30), ('n002/e.png', 17, 9)]


def _make_images(root, images=_IMAGES):
  for i, (rel, h, w) in enumerate(images):
    path = root / 'images' / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format='JPEG' if rel.lower().endswith(('jpg', 'jpeg'))
                                 else 'PNG')
  return root / 'images'


@pytest.fixture(scope='module')
def tiny():
  return ed.make_estimator(ed.TINY_RANDOM, seed=0, batch_size=2)


def _run(root, estimator, **kwargs):
  items = ed.folder_items(root / 'images', root / 'depths')
  return ed.estimate_depths(items, estimator, batch_size=2, progress=False, **kwargs)


def test_writes_the_authors_format_for_every_image(tmp_path, tiny):
  _make_images(tmp_path)
  summary = _run(tmp_path, tiny)
  assert (summary.written, summary.existing, summary.bad) == (5, 0, 0)
  for rel, h, w in _IMAGES:
    path = tmp_path / 'depths' / (os.path.splitext(rel)[0] + '.npz')
    with np.load(path) as npz:
      assert npz.files == ['arr_0']
      stored = npz['arr_0']
    assert stored.dtype == np.float16 and stored.shape == (h, w)
    assert np.isfinite(stored).all() and stored.min() > 0
    # tiny-random uses the 'max' scale: the peak is 12504, read as disparity 2 (depth 0.5).
    assert float(stored.max()) == ed.RELATIVE_PEAK
    depth = preprocess.read_depth_npz(path)
    np.testing.assert_array_equal(depth, stored.astype(np.float32))
    assert float(preprocess.scale_disparity(depth).max()) == 2.0
    image = preprocess.read_image(tmp_path / 'images' / rel)
    example = preprocess.rgbd_example(image, depth, 8)
    assert example['rgb'].shape == (8, 8, 3) and example['depth'].shape == (8, 8, 1)
    assert 0.0 <= example['depth'].min() and example['depth'].max() <= 1.0
  assert sorted(os.listdir(tmp_path / 'depths' / 'n002')) == ['c.npz', 'd.npz', 'e.npz']


def test_same_seed_same_maps_other_seed_other_maps(tiny):
  images = np.random.default_rng(0).integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
  first = tiny.predict(images)
  assert first.shape == (3, 20, 30) and first.dtype == np.float32 and first.min() > 0
  # Bit-equal for the same seed and batch size (another batch size is another XLA program,
  # whose convolutions may round differently in the last bit: see the rtol check below).
  again = ed.make_estimator(ed.TINY_RANDOM, seed=0, batch_size=2).predict(images)
  np.testing.assert_array_equal(first, again)
  other = ed.make_estimator(ed.TINY_RANDOM, seed=1).predict(images)
  assert np.abs(other - first).max() > 1e-3 * np.abs(first).max()
  # A batch gives each image what it gets alone (padding does not leak across the batch).
  np.testing.assert_allclose(tiny.predict(images[1:2])[0], first[1], rtol=1e-5)


def test_second_run_writes_nothing_and_recomputes_broken_files(tmp_path, tiny):
  _make_images(tmp_path)
  _run(tmp_path, tiny)
  depths = tmp_path / 'depths'
  good = np.load(depths / 'n001' / 'a.npz')['arr_0']
  mtimes = {p: os.stat(p).st_mtime_ns for p in depths.rglob('*.npz')}

  again = _run(tmp_path, tiny)
  assert (again.written, again.existing, again.bad) == (0, 5, 0)
  assert {p: os.stat(p).st_mtime_ns for p in depths.rglob('*.npz')} == mtimes

  # A truncated file (a run killed by something other than us), garbage, and a map of the
  # wrong size are all redone; the others are left alone.
  data = (depths / 'n001' / 'a.npz').read_bytes()
  (depths / 'n001' / 'a.npz').write_bytes(data[:len(data) // 2])
  (depths / 'n002' / 'c.npz').write_bytes(b'not a zip')
  np.savez(depths / 'n002' / 'e.npz', np.ones((9, 17), np.float16))
  assert not ed.is_finished(depths / 'n001' / 'a.npz')
  third = _run(tmp_path, tiny)
  assert (third.written, third.existing) == (3, 2)
  np.testing.assert_array_equal(np.load(depths / 'n001' / 'a.npz')['arr_0'], good)
  assert np.load(depths / 'n002' / 'e.npz')['arr_0'].shape == (17, 9)
  assert not list(depths.rglob('*.partial'))


def test_corrupt_image_raises_naming_the_file_or_is_counted(tmp_path, tiny):
  _make_images(tmp_path)
  bad = tmp_path / 'images' / 'n001' / 'b.png'
  bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
  with pytest.raises(errors.BadExampleError, match=r'n001/b\.png: cannot decode image'):
    _run(tmp_path, tiny)
  summary = _run(tmp_path, tiny, skip_bad_examples=True)
  assert (summary.written, summary.bad) == (4, 1)
  assert summary.skip_log.skipped[0][0] == str(bad)
  assert '1 bad example' in summary.report() and str(bad) in summary.report()
  assert not (tmp_path / 'depths' / 'n001' / 'b.npz').exists()


def test_two_images_with_one_output_name_are_refused(tmp_path):
  _make_images(tmp_path, [('x/a.png', 4, 4), ('x/a.jpg', 4, 4)])
  with pytest.raises(ValueError, match=r'a\.png and .*a\.jpg would both write .*a\.npz'):
    ed.folder_items(tmp_path / 'images', tmp_path / 'depths')


def test_scales():
  d = np.array([[1.0, 4.0], [2.0, 8.0]], np.float32)
  np.testing.assert_array_equal(ed.to_stored(d, 'max'), (d * 12504 / 8).astype(np.float16))
  np.testing.assert_array_equal(ed.to_stored(d * 1e3, 'midas'), (d * 1e3).astype(np.float16))
  assert float(ed.to_stored(d * 1e5, 'midas').max()) == ed.FP16_MAX  # clipped, not inf
  with pytest.raises(FloatingPointError, match='x.png'):
    ed.to_stored(np.full((2, 2), np.nan), 'max', 'x.png')


@pytest.mark.parametrize('file_name,rel', [
    ('n01440764_10026.JPEG', 'n01440764/n01440764_10026.npz'),
    (b'ILSVRC2012_val_00000001.JPEG', 'ILSVRC2012_val_00000001.npz'),
    ('cats/001.png', 'cats/001.npz'),
])
def test_tfds_file_names_map_to_the_authors_layout(file_name, rel):
  assert ed.tfds_relative_path(file_name) == rel


def test_tfds_file_name_outside_the_folder_is_refused():
  with pytest.raises(ValueError, match='relative output path'):
    ed.tfds_relative_path('../x.jpg')


def test_tfds_mock_imagenet(tmp_path, tiny):
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=3):
    source = tfds.data_source('imagenet2012', split='train')
    examples = [source[i] for i in range(3)]
    summary = ed.estimate_depths(ed.tfds_items(source, tmp_path), tiny, batch_size=2,
                                 total=len(source), progress=False)
    assert (summary.written, summary.existing) == (3, 0)
    again = ed.estimate_depths(ed.tfds_items(source, tmp_path), tiny, batch_size=2,
                               progress=False)
    assert (again.written, again.existing) == (0, 3)
  for example in examples:
    path = tmp_path / ed.tfds_relative_path(example['file_name'])
    depth = preprocess.read_depth_npz(path)
    assert depth.shape == example['image'].shape[:2] and depth.min() > 0


def test_cli_end_to_end(tmp_path):
  images = _make_images(tmp_path, _IMAGES[:3])
  cmd = [sys.executable, '-m', 'ivid_jax.main', 'estimate-depth', f'--images={images}',
         '--depth_model=tiny-random', '--batch_size=2']
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'wrote 3 depth map(s), skipped 0 already finished, 0 bad example(s)' in result.stdout
  # --out defaults to the `depths` folder beside `images`.
  for rel, h, w in _IMAGES[:3]:
    depth = preprocess.read_depth_npz(tmp_path / 'depths' / (os.path.splitext(rel)[0] + '.npz'))
    assert depth.shape == (h, w)

  (images / 'n001' / 'a.JPEG').write_bytes(b'garbage')
  (tmp_path / 'depths' / 'n001' / 'a.npz').unlink()
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]  # after the progress bar: one line
  assert last.startswith('ivid-jax estimate-depth: error: ')
  assert 'n001/a.JPEG: cannot decode' in last
  result = subprocess.run(cmd + ['--skip_bad_examples'], capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'wrote 0 depth map(s), skipped 2 already finished, 1 bad example(s)' in result.stdout


def test_cli_needs_exactly_one_input(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'ivid_jax.main', 'estimate-depth',
                           f'--out={tmp_path}'], capture_output=True, text=True, timeout=120,
                          check=False)
  assert result.returncode == 2 and '--images=DIR or --tfds=NAME' in result.stderr
  assert '--depth_model' in result.stderr  # the command's help comes with a usage error


def test_transformers_backend_with_a_tiny_random_dpt(tmp_path):
  transformers = pytest.importorskip('transformers')
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  # The configuration of transformers' own DPT tests: a 2-layer ViT on 32x32 inputs.
  config = transformers.DPTConfig(
      image_size=32, patch_size=16, hidden_size=32, fusion_hidden_size=32, num_hidden_layers=2,
      backbone_out_indices=[0, 1, 2, 3], num_attention_heads=4, intermediate_size=37,
      neck_hidden_sizes=[16, 32], is_hybrid=False)
  transformers.DPTForDepthEstimation(config).save_pretrained(tmp_path / 'model')
  transformers.DPTImageProcessor(size={'height': 32, 'width': 32}).save_pretrained(
      tmp_path / 'model')
  estimator = ed.make_estimator(str(tmp_path / 'model'))
  assert estimator.depth_scale == 'midas'
  images = np.random.default_rng(0).integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
  disparity = estimator.predict(images)
  assert disparity.shape == (2, 20, 30) and disparity.dtype == np.float32
  assert np.isfinite(disparity).all()
