"""`ivid-jax eval` and `eval-3d` end to end: reports, the protocol's plumbing, usage errors."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ivid_jax.evaluation import eval_3d
from ivid_jax.evaluation import fidelity
from ivid_jax.evaluation import ground_truth
from ivid_jax.evaluation import inception
from ivid_jax.evaluation import metrics
from ivid_jax.evaluation import report
from ivid_jax.evaluation import scenes as scenes_lib

DATA = os.path.join(os.path.dirname(__file__), 'data')


def _run(*args):
  return subprocess.run([sys.executable, '-m', 'ivid_jax.main', *args], capture_output=True,
                        text=True, timeout=600, check=False)


@pytest.fixture(scope='module')
def variables():
  ref = np.load(os.path.join(DATA, 'inception_ref.npz'))
  layout = {str(n): tuple(int(x) for x in str(s).split(',') if x)
            for n, s in zip(ref['layout_names'], ref['layout_shapes'])}
  return inception.params_from_state_dict(inception.random_state_dict(layout, int(ref['seed'])))


def test_eval_of_a_folder_against_itself_has_zero_fid(tmp_path, variables, monkeypatch):
  # Eight 128 px "samples" in results/ and the same PNGs as the real set (in a subfolder:
  # the real set is searched recursively). 128 -> 128 Lanczos is the identity, so the real
  # pipeline must give exactly the fakes' features, and FID must vanish.
  fake = tmp_path / 'out' / 'results'
  fake.mkdir(parents=True)
  ref = np.load(os.path.join(DATA, 'inception_ref.npz'))
  for i in range(8):
    image = ref['image_1'] if i % 2 else ref['image_2']
    Image.fromarray(np.roll(image, 9 * i, axis=1)).save(fake / f'rgb_class{i:03d}_seed{i:05d}.png')
  real = tmp_path / 'real' / 'n0000'
  shutil.copytree(fake, real)
  # The metrics see the features the pipeline produced; they are computed on the first 64 of
  # the 2048 dimensions, because the eigenvalues of a 2048 x 2048 product take a minute on 2
  # busy cores and FID's algebra has its own tests (metrics_test.py, against torch-fidelity).
  seen = {}
  all_metrics = metrics.all_metrics

  def spy(fake_feats, real_feats, *, real_stats, **kwargs):
    seen.update(fake=fake_feats, real=real_feats, stats=real_stats)
    return all_metrics({k: v[:, :64] for k, v in fake_feats.items()},
                       {'pool': real_feats['pool'][:, :64]}, **kwargs)

  monkeypatch.setattr(metrics, 'all_metrics', spy)
  result = fidelity.evaluate(fake=str(fake), real=str(tmp_path / 'real'),
                             inception_path='random-weights', variables=variables,
                             num_samples=8, batch_size=8, cache_dir=str(tmp_path / 'cache'),
                             kid_subsets=3, kid_subset_size=4, isc_splits=2, progress=False)
  np.testing.assert_array_equal(seen['real']['pool'], seen['fake']['pool'])
  assert seen['fake']['pool'].shape == (8, 2048) and seen['fake']['logits_unbiased'].shape == (
      8, 1008)
  np.testing.assert_array_equal(seen['stats'].mu, seen['real']['pool'].mean(0))
  m = result['metrics']
  assert abs(m[metrics.FID]) < 1e-6  # identical sets, 64 dimensions: rounding only
  assert 1.0 <= m[metrics.ISC_MEAN] <= 1008.0 and np.isfinite(m[metrics.KID_MEAN])
  assert result['fake']['count'] == 8 and result['real']['used'] == 8
  assert os.listdir(tmp_path / 'cache')  # the real features were cached
  json_path, md_path = report.write(str(tmp_path / 'out'), 'eval', result,
                                    fidelity.markdown(result))
  saved = json.loads(open(json_path, encoding='utf-8').read())
  assert saved['metrics'][metrics.FID] == pytest.approx(m[metrics.FID])
  table = open(md_path, encoding='utf-8').read()
  assert '| FID | KID x 1e3 | IS |' in table and str(fake) in table


def test_eval_command_usage_errors(tmp_path):
  result = _run('eval', f'--fake={tmp_path}', '--inception=x.pth')
  assert result.returncode == 2 and 'exactly one real set' in result.stderr


@pytest.fixture(scope='module')
def scene_dir(tmp_path_factory):
  """A sampler-style output folder holding one ground-truth synthetic scene (64 px, 3x9 views)."""
  out = tmp_path_factory.mktemp('sample_out')
  scene = ground_truth.synthetic_scenes(64, 'test', 0, 4)[0]
  scenes_lib.write_scene(out / 'scenes' / 'scene_class000_seed00000.npz', scene)
  return out


def test_eval_3d_scores_a_ground_truth_scene_at_its_ceiling(scene_dir):
  result, markdown = eval_3d.run(scenes_dir=str(scene_dir), metrics=eval_3d.METRICS,
                                 progress=False)
  mean = result['mean']
  # Ceilings of this scene (tests/consistency_test.py): depth within 2 % on 99.9 % of the
  # overlap, 33 dB, every TSED pair consistent; flatness well below a plane's 1.
  assert mean['reprojection']['depth_inliers'] > 0.99 and mean['reprojection']['psnr'] > 30
  assert mean['tsed']['tsed'] == 1.0 and mean['flatness']['flatness'] < 0.7
  saved = json.loads(open(scene_dir / 'eval_3d.json', encoding='utf-8').read())
  assert saved['scenes'] == 1 and saved['per_scene'][0]['name'] == 'scene_class000_seed00000.npz'
  assert 'TSED' in markdown and open(scene_dir / 'eval_3d.md', encoding='utf-8').read() == markdown


def test_eval_3d_command(scene_dir, tmp_path):
  result = _run('eval-3d', f'--scenes={scene_dir}', '--metrics=flatness', f'--out={tmp_path}')
  assert result.returncode == 0, result.stderr[-2000:]
  saved = json.loads((tmp_path / 'eval_3d.json').read_text())
  assert list(saved['mean']) == ['flatness'] and 'flatness' in result.stdout
  result = _run('eval-3d', f'--scenes={scene_dir}', '--synthetic=r64')
  assert result.returncode == 2 and 'exactly one of --scenes' in result.stderr
  result = _run('eval-3d', f'--scenes={scene_dir}', '--metrics=fid')
  assert result.returncode == 2 and "unknown --metrics ['fid']" in result.stderr
  # The report folder holds files now: refused, then written over with --overwrite.
  result = _run('eval-3d', f'--scenes={scene_dir}', '--metrics=flatness', f'--out={tmp_path}')
  assert result.returncode == 1 and 'pass --overwrite' in result.stderr
  result = _run('eval-3d', f'--scenes={scene_dir}', '--metrics=flatness', f'--out={tmp_path}',
                '--overwrite')
  assert result.returncode == 0, result.stderr[-2000:]


def test_eval_3d_default_metrics_leave_tsed_out_without_opencv(scene_dir, tmp_path, monkeypatch):
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'cv2' else real_find_spec(name, *a))
  result, markdown = eval_3d.run(scenes_dir=str(scene_dir), out=str(tmp_path), progress=False)
  assert list(result['mean']) == ['reprojection', 'flatness'] and 'TSED' not in markdown
  assert result['notes'] == ["TSED left out: it needs OpenCV (pip install 'ivid-jax[eval]')."]
