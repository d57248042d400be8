"""The protocol's image sets: eval.py's real-image preprocessing, the fake draw, feature caches."""

import os

import numpy as np
import pytest
from PIL import Image

from ivid_jax.data.errors import BadExampleError
from ivid_jax.evaluation import image_sets
from ivid_jax.evaluation import inception


def _picture(h, w, seed=0):
  rng = np.random.RandomState(seed)
  y, x = np.mgrid[0:h, 0:w]
  base = np.stack([x * 255 / w, y * 255 / h, (x + y) % 37 * 7], -1)
  return np.clip(base + rng.uniform(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


_EVAL_PY = np.load(os.path.join(os.path.dirname(__file__), 'data', 'eval_py_real_ref.npz'))


@pytest.mark.parametrize('name', [str(n) for n in _EVAL_PY['names']])
def test_real_images_are_preprocessed_as_eval_py(name, tmp_path):
  """Against the authors' eval.py run on the same files (tests/data/make_eval_py_ref.py)."""
  path = tmp_path / f'{name}.{_EVAL_PY[name + "_ext"]}'
  path.write_bytes(_EVAL_PY[f'{name}_file'].tobytes())
  size = int(_EVAL_PY['size'])
  ours = image_sets.read_real(str(path), size)
  assert ours.dtype == np.uint8 and ours.shape == (size, size, 3)
  np.testing.assert_array_equal(ours, _EVAL_PY[f'{name}_out'])


def test_real_folder_is_searched_recursively_and_bad_files_are_named(tmp_path):
  (tmp_path / 'a' / 'b').mkdir(parents=True)
  Image.fromarray(_picture(40, 50)).save(tmp_path / 'a' / 'x.PNG')
  Image.fromarray(_picture(50, 40)).save(tmp_path / 'a' / 'b' / 'y.jpeg')
  (tmp_path / 'notes.txt').write_text('not an image')
  (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 truncated')
  paths = image_sets.list_real_images(str(tmp_path))
  # png/jpg/jpeg in any case, sorted by path; other files ignored.
  assert [os.path.relpath(p, tmp_path) for p in paths] == ['a/b/y.jpeg', 'a/x.PNG', 'broken.jpg']
  read = lambda p: image_sets.read_real(p, 16)
  with pytest.raises(BadExampleError, match='broken.jpg'):
    list(image_sets.folder_images(paths, read))
  log = image_sets.SkipLog()
  chunks = list(image_sets.folder_images(paths, read, log))
  assert sum(len(c) for c in chunks) == 2 and len(log) == 1 and 'broken.jpg' in log.report()


def test_fakes_are_drawn_reproducibly_and_must_have_the_protocol_size(tmp_path):
  for i in range(5):
    Image.fromarray(_picture(16, 16, i)).save(tmp_path / f'rgb_{i:05d}.png')
  drawn = image_sets.list_fake_images(str(tmp_path), 3, seed=1)
  assert len(drawn) == 3 and drawn == image_sets.list_fake_images(str(tmp_path), 3, seed=1)
  assert len(image_sets.list_fake_images(str(tmp_path), None)) == 5
  with pytest.raises(ValueError, match='5 .png images, fewer than the 10'):
    image_sets.list_fake_images(str(tmp_path), 10)
  Image.fromarray(_picture(16, 20)).save(tmp_path / 'odd.png')
  with pytest.raises(BadExampleError, match='odd.png.*20x16'):
    image_sets.read_fake(str(tmp_path / 'odd.png'), 16)


def test_tfds_examples_single_view_greyscale_and_multi_view():
  pictures = [_picture(30, 40, 1), _picture(40, 30, 2)]
  source = [{'image': pictures[0]}, {'image': pictures[1][..., :1]}]
  out = np.concatenate(list(image_sets.tfds_images(source, size=16)))
  # A TFDS image goes through the preprocessing checked against eval.py above.
  np.testing.assert_array_equal(out[0], image_sets.center_crop_resize(
      Image.fromarray(pictures[0]), 16))
  grey = Image.fromarray(pictures[1][..., 0])
  np.testing.assert_array_equal(out[1], image_sets.center_crop_resize(grey, 16))
  views = [{'rgb': np.stack([_picture(24, 24, 3), _picture(24, 24, 4)])}]
  out = np.concatenate(list(image_sets.tfds_images(views, size=24, key='rgb', view=1)))
  np.testing.assert_array_equal(out[0], _picture(24, 24, 4))  # square at the size: unchanged
  with pytest.raises(ValueError, match="no 'image' feature"):
    list(image_sets.tfds_images(views, size=24))


def test_real_features_are_cached_per_weights(tmp_path, monkeypatch):
  for i in range(3):
    Image.fromarray(_picture(20, 24, i)).save(tmp_path / f'{i}.png')
  calls = []

  def fake_extract(variables, images, **kwargs):
    del kwargs
    stacked = np.concatenate(list(images)).astype(np.float32)
    calls.append(len(stacked))
    pool = np.concatenate([stacked.reshape(len(stacked), -1)[:, :4],
                           np.full((len(stacked), 1), variables['w'])], 1)
    return {'pool': pool, 'logits_unbiased': pool}

  monkeypatch.setattr(inception, 'extract', fake_extract)
  cache = str(tmp_path / 'cache')
  first = image_sets.real_features({'w': np.float32(1)}, folder=str(tmp_path), size=8,
                                   cache_dir=cache, progress=False)
  again = image_sets.real_features({'w': np.float32(1)}, folder=str(tmp_path), size=8,
                                   cache_dir=cache, progress=False)
  other = image_sets.real_features({'w': np.float32(2)}, folder=str(tmp_path), size=8,
                                   cache_dir=cache, progress=False)
  assert calls == [3, 3]  # the second call read the cache; other weights recomputed
  assert again[2]['cached'] and not other[2]['cached']
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1].sigma, again[1].sigma)
  assert os.listdir(cache) == [os.path.basename(first[2]['cache'])]
  assert first[2]['cache'].endswith('-3-8px.npz')
