"""The main demo (`ivid-jax demo`): the scenes, videos, meshes, image-to-3D and scores it writes."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ivid_jax import images
from ivid_jax.data import synthetic
from ivid_jax.demos import scenes
from ivid_jax.evaluation import ground_truth
from ivid_jax.evaluation import scenes as scenes_lib
from ivid_jax.models import model_file
from ivid_jax.sampling import scene_io

# Quick settings: one generated scene, the image-to-3D one and the orbit one (27 views, in the
# same batch), 2 DDIM steps each, 4 frames of the preview renderer (the exact renderer's cost
# grows with the random views' noisy depth), on tiny 16 px networks (the notebook test runs the
# shipped 32 px architecture); videos and grids enlarged twice.
QUICK = scenes.Options(classes=('tabletop',), seed=5, steps_uncond=2, steps_cond=2, frames=4,
                       render_mode='preview', video_scale=2, grid_scale=2, heldout=2)
# Small runs: nothing scored or exported; two scenes and the image-to-3D one, so that their
# chain has the quick runs' shapes (3 scenes of 27 views) and reuses its compilation.
SMALL = dict(classes=('tabletop', 'room'), seed=5, steps_uncond=2, steps_cond=2, frames=4,
             render_mode='preview', video_scale=1, grid_scale=1, heldout=2, ceilings=False,
             metrics=(), export=())


@pytest.fixture(scope='module')
def quick_runs(tiny_synthetic_model_files, tmp_path_factory):
  """The quick demo twice with the same seed (another seed gives other scenes: chain_test)."""
  out = {}
  for name, seed in (('a', 5), ('b', 5)):
    folder = tmp_path_factory.mktemp(f'demo_{name}')
    out[name] = scenes.run_demo(str(folder), uncond=tiny_synthetic_model_files['uncond'],
                                cond=tiny_synthetic_model_files['cond'],
                                options=scenes.Options(**{**QUICK.__dict__, 'seed': seed}),
                                progress=False, log=None)
  return out


def _gif_frames(path):
  with Image.open(path) as im:
    return im.n_frames, im.size


def test_quick_demo_writes_grids_videos_meshes_and_reports(quick_runs):
  result = quick_runs['a']
  (scene,) = result.scenes
  assert (scene.seed, scene.label, scene.class_name) == (5, 3, 'tabletop')
  n, s = 16, QUICK.grid_scale
  # 3 x 9 tiles of n px enlarged s times, 2 px apart; the conditions' grids alike.
  sfx = scene.name
  for path in (scene.grid_rgb, scene.grid_depth, os.path.join(result.out_dir, 'conds',
                                                              f'rgb_cond_{sfx}.png')):
    with Image.open(path) as im:
      assert im.size == (2 + 9 * (s * n + 2), 2 + 3 * (s * n + 2)), path
  # Colour | depth side by side, enlarged twice; one GIF frame per trajectory frame.
  assert _gif_frames(scene.gif) == (QUICK.frames, (2 * n * 2, n * 2))
  with open(scene.mp4, 'rb') as f:
    assert f.read(12)[4:8] == b'ftyp'
  ply, glb = scene.meshes
  with open(ply, 'rb') as f:
    header = f.read(300).split(b'end_header')[0].decode()
  assert header.startswith('ply\nformat binary_little_endian 1.0')
  assert int(header.split('element vertex ')[1].split()[0]) > 0
  with open(glb, 'rb') as f:
    assert f.read(4) == b'glTF'
  stored = scene_io.read_scene(scene.scene)
  assert stored.views.shape == (27, n, n, 4) and stored.viewset == '3x9'
  report = json.load(open(result.report[0]))
  assert report['scenes'][0]['name'] == scene.name
  assert set(result.times) == {'load', 'view 0 (G_u)', 'ground truth scenes (the wait for them)',
                               'views 1-26 (G_c)', 'render', 'turntable video', 'export',
                               'metrics', 'total'}  # the orbit's chain in the 3x9 batch
  summary = result.summary()
  assert scene.name in summary and result.image_to_3d.side_by_side in summary
  assert result.orbit.name in summary and result.orbit.gif in summary
  assert report['orbit']['name'] == result.orbit.name


def _tiles(path, display, n, scale):
  """The tiles of a grid PNG of n px views enlarged `scale` times, 2 px apart, by index."""
  image = np.asarray(Image.open(path))
  p, m = images.GRID_PADDING, n * scale
  assert image.shape[:2] == (p + len(display) * (m + p), p + max(map(len, display)) * (m + p))
  return {k: image[p + i * (m + p):p + i * (m + p) + m, p + j * (m + p):p + j * (m + p) + m]
          for i, row in enumerate(display) for j, k in enumerate(row)}


def test_the_orbit_scene_goes_around_in_the_3x9_batch(quick_runs):
  result = quick_runs['a']
  orbit = result.orbit
  # Its seed follows the image-to-3D scene's; its class is spheres' (ORBIT_CLASS).
  assert (orbit.seed, orbit.label, orbit.class_name) == (7, 0, 'spheres')
  assert orbit.scene == os.path.join(result.out_dir, 'orbit', 'scenes', f'scene_{orbit.name}.npz')
  stored = scene_io.read_scene(orbit.scene)
  n, v = 16, QUICK.orbit_views
  assert v == scenes.NUM_3X9 == 27 and stored.viewset == 'orbit'
  assert stored.views.shape == (v, n, n, 4)
  np.testing.assert_allclose(stored.yaw, 2 * np.pi * np.arange(v) / v, atol=1e-6)
  np.testing.assert_array_equal(stored.pitch, 0.0)
  assert stored.display == tuple(tuple(range(r, r + 9)) for r in (0, 9, 18))
  # The grids show its views in generation order, 3 rows of 9, each enlarged exactly.
  s = QUICK.grid_scale
  arrays = scene_io.read_arrays(orbit.scene)
  tiles = _tiles(orbit.grid_rgb, stored.display, n, s)
  for k in range(v):
    np.testing.assert_array_equal(tiles[k], scenes.enlarge(arrays.rgb[k], s))
  assert len(_tiles(orbit.grid_depth, stored.display, n, s)) == v
  # Its turntable: every frame of a full turn, colour | depth, enlarged like the others.
  assert orbit.gif.endswith(f'{orbit.name}_turntable.gif')
  assert _gif_frames(orbit.gif) == (QUICK.frames, (2 * n * 2, n * 2))
  assert [os.path.splitext(m)[1] for m in orbit.meshes] == ['.ply', '.glb']
  assert math.isfinite(orbit.metrics['flatness']['flatness'])
  assert f'orbit {orbit.name} (27 views around)' in result.table()
  # Scored beside the 3x9 scenes but not in their mean.
  np.testing.assert_equal(result.mean(), scenes._mean([result.scenes[0].metrics]))


def test_an_orbit_of_another_size_runs_its_own_chain_and_zero_turns_it_off(
    tiny_synthetic_model_files, tmp_path):
  models = dict(uncond=tiny_synthetic_model_files['uncond'],
                cond=tiny_synthetic_model_files['cond'], progress=False, log=None)
  five = scenes.run_demo(str(tmp_path / 'five'), options=scenes.Options(
      **SMALL, orbit_views=5, orbit_class='room'), **models)
  assert 'orbit views 1-4 (G_c, a chain of its own)' in five.times
  stored = scene_io.read_scene(five.orbit.scene)
  assert stored.views.shape == (5, 16, 16, 4) and stored.display == ((0, 1, 2, 3, 4),)
  assert (five.orbit.seed, five.orbit.label) == (8, 4) and os.path.isfile(five.orbit.gif)
  with Image.open(five.orbit.grid_rgb) as im:  # one row of 5 views as drawn (grid_scale 1)
    assert im.size == (2 + 5 * 18, 2 + 18)
  # Off: no orbit scene, folder, video or stage.
  off = scenes.run_demo(str(tmp_path / 'off'), options=scenes.Options(**SMALL, orbit_views=0),
                        **models)
  assert off.orbit is None and not os.path.exists(tmp_path / 'off' / 'orbit')
  assert not any('orbit' in k or 'turntable' in k for k in off.times)
  videos = {os.path.splitext(f)[0] for f in os.listdir(tmp_path / 'off' / 'videos')}
  assert videos == {f.name for f in off.scenes + [off.image_to_3d.files]}
  # The 3x9 scene is the same with or without the orbit scene beside it.
  np.testing.assert_array_equal(scene_io.read_arrays(off.scenes[0].scene).rgb,
                                scene_io.read_arrays(five.scenes[0].scene).rgb)


def test_enlarge_grid_draws_every_pixel_as_a_block_and_keeps_the_separators():
  rng = np.random.default_rng(0)
  tiles = rng.integers(0, 256, (5, 3, 3, 3), np.uint8)
  rows = [(0, 1, 2), (3, 4, -1)]
  small = images.to_uint8(images.grid(tiles / 255.0, rows, fill=1.0), 'truncate')
  big = scenes.enlarge_grid(small, 3, 4)
  p = images.GRID_PADDING
  assert big.shape == (p + 2 * (12 + p), p + 3 * (12 + p), 3)
  # It is the grid of the enlarged tiles (separators p px): each pixel a 4 x 4 block of itself.
  np.testing.assert_array_equal(
      big, images.to_uint8(images.grid(scenes.enlarge(tiles, 4) / 255.0, rows, fill=1.0),
                           'truncate'))
  block = big[p + 4:p + 8, p + 12 + p + 8:p + 12 + p + 12]  # tile 1, source pixel (1, 2)
  assert (block == small[p + 1, p + 3 + p + 2]).all()
  np.testing.assert_array_equal(scenes.enlarge_grid(small, 3, 1), small)
  with pytest.raises(ValueError, match='no grid of 4 px tiles'):
    scenes.enlarge_grid(small, 4, 2)


def test_the_command_passes_the_orbit_and_grid_flags(tmp_path):
  code = """
import sys
from ivid_jax import main
from ivid_jax.demos import scenes
def fake(out, options, **kwargs):
  print('options', options.orbit_views, options.orbit_class, options.grid_scale)
  print('sampler', options.seeds, options.classes, options.steps_uncond, options.steps_cond,
        options.eta_uncond, options.eta_cond, options.guidance, options.clip_denoised,
        options.erode_rgb, options.replace_rgb, options.replace_rgb_last, options.replace_depth)
  sys.exit(0)
scenes.run_demo = fake
main.run(sys.argv)
"""
  result = subprocess.run([sys.executable, '-c', code, 'demo', '--orbit_views=0',
                           '--orbit_class=room', '--grid_scale=3', f'--out={tmp_path}'],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'options 0 room 3' in result.stdout
  defaults = subprocess.run([sys.executable, '-c', code, 'demo', f'--out={tmp_path}'],
                            capture_output=True, text=True, timeout=300, check=False)
  assert 'options 27 None 4' in defaults.stdout, defaults.stderr[-2000:]
  # The demo preset: the demo's own settings, as its flags defaulted to before the preset.
  assert ("sampler (0, 1, 2) ('spheres', 'tabletop', 'room') 50 20 1.0 1.0 3.0 True None 1.0 "
          'True 1.0') in defaults.stdout

  def sampler_line(*flags):
    result = subprocess.run([sys.executable, '-c', code, 'demo', f'--out={tmp_path}', *flags],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()[-1]

  # The authors' preset, and explicit flags over a preset.
  assert sampler_line('--preset=authors', '--seeds=0-3', '--classes=room') == (
      "sampler (0, 1, 2, 3) ('room', 'room', 'room', 'room') 1000 50 0.0 0.0 3.0 False None 0.1 "
      'False 0.2')
  assert sampler_line('--seeds=7-8', '--classes=boxes,3', '--steps_cond=5') == (
      "sampler (7, 8) ('boxes', 3) 50 5 1.0 1.0 3.0 True None 1.0 True 1.0")
  # Classes without seeds: one scene per class, seeds 0, 1, ...; seeds without classes: the
  # preset's classes, repeated.
  assert sampler_line('--classes=boxes,room').startswith("sampler None ('boxes', 'room') ")
  assert sampler_line('--seeds=0-3').startswith(
      "sampler (0, 1, 2, 3) ('spheres', 'tabletop', 'room', 'spheres') ")
  assert sampler_line('--seeds=0-3', '--classes=mod').startswith('sampler (0, 1, 2, 3) mod ')
  wrong = subprocess.run([sys.executable, '-c', code, 'demo', f'--out={tmp_path}', '--seeds=0-3',
                          '--classes=boxes,room'], capture_output=True, text=True, timeout=300,
                         check=False)
  assert wrong.returncode == 2 and '2 classes for 4 seeds' in wrong.stderr.splitlines()[-1]


def test_quick_demo_metrics_are_finite_and_ground_truth_is_a_ceiling(quick_runs):
  result = quick_runs['a']
  (scene,) = result.scenes
  # Random networks draw noise, whose depth leaves neighbours almost no overlap: the PSNR is
  # then undefined (NaN, no pair covers 1%); coverage, TSED and flatness are always defined.
  assert math.isfinite(scene.metrics['reprojection']['coverage'])
  assert math.isfinite(scene.metrics['flatness']['flatness'])
  assert math.isfinite(scene.metrics['tsed']['tsed'])
  (gt,) = result.ground_truth
  assert gt['name'] == 'synthetic_rgbd/r16_solid:test[3]' and gt['label'] == 3
  assert gt['metrics']['reprojection']['psnr'] > 40  # exact scenes reproject almost exactly
  assert gt['metrics']['reprojection']['depth_inliers'] > 0.99
  assert gt['metrics']['reprojection']['coverage'] > 10 * scene.metrics['reprojection'][
      'coverage']
  # The image-to-3D scene keeps its true view 0, so its views overlap and the PSNR exists.
  assert math.isfinite(result.image_to_3d.files.metrics['reprojection']['psnr'])


def test_image_to_3d_keeps_the_given_view_and_scores_the_novel_ones(quick_runs):
  i23d = quick_runs['a'].image_to_3d
  assert i23d.view0_max_abs == 0.0
  truth = scenes.heldout_scenes(16, [2], 'solid')[2]
  assert i23d.source == truth.name == 'synthetic_rgbd/r16_solid:test[2]'
  stored = scenes_lib.read_scene(i23d.files.scene)
  np.testing.assert_array_equal(stored.rgb[0], truth.rgb[0])
  assert i23d.files.label == 2 % synthetic.NUM_CLASSES
  s = i23d.scores
  assert len(s['psnr_per_view']) == 26 and all(math.isfinite(p) for p in s['psnr_per_view'])
  for key in ('psnr_all', 'psnr_inpainted', 'ssim_all', 'depth_abs_rel'):
    assert math.isfinite(s[key]), key
  assert 0.0 <= s['shown_share'] <= 1.0
  with Image.open(i23d.side_by_side) as im:  # 6 rows (colour, depth) of 9 + 1 + 9 tiles
    assert im.size == (2 + 19 * 34, 2 + 6 * 34)  # of 16 px views enlarged twice


def test_a_seed_gives_the_same_scenes_and_scores(quick_runs):
  a, b = quick_runs['a'], quick_runs['b']
  for x, y in ((a.scenes[0], b.scenes[0]), (a.image_to_3d.files, b.image_to_3d.files),
               (a.orbit, b.orbit)):
    sx, sy = scene_io.read_arrays(x.scene), scene_io.read_arrays(y.scene)
    np.testing.assert_array_equal(sx.rgb, sy.rgb)
    np.testing.assert_array_equal(sx.depth, sy.depth)
    np.testing.assert_equal(x.metrics, y.metrics)  # NaN (undefined PSNR) equals NaN here
  np.testing.assert_equal(a.image_to_3d.scores, b.image_to_3d.scores)


def test_options_reach_the_chain_settings():
  settings = scenes.chain_settings(scenes.Options(), 32)
  # Clipped x_0; the authors' 3 px RGB erosion at 128 px is 1 px at the shipped 32 px.
  assert settings.clip_denoised and settings.erode_rgb == 1
  assert settings.atol == settings.rtol == pytest.approx(0.12)  # 0.03 at 128 px
  assert (settings.steps_uncond, settings.steps_cond) == (50, 20)
  assert (settings.eta_uncond, settings.eta) == (1.0, 1.0)  # stochastic DDIM for both networks
  authors_eta = scenes.chain_settings(scenes.Options(eta_uncond=0.0, eta_cond=0.0), 32)
  assert (authors_eta.eta_uncond, authors_eta.eta) == (0.0, 0.0)
  assert (settings.replace_rgb, settings.replace_depth) == (1.0, 1.0)
  assert settings.replace_rgb_last  # the shown colour is the condition's, final step included
  authors = scenes.chain_settings(scenes.Options(replace_rgb=0.1, replace_depth=0.2,
                                                 replace_rgb_last=False), 32)
  assert (authors.replace_rgb, authors.replace_depth) == (0.1, 0.2)
  assert not authors.replace_rgb_last
  settings = scenes.chain_settings(scenes.Options(erode_rgb=2, clip_denoised=False), 128)
  assert not settings.clip_denoised and settings.erode_rgb == 2
  assert scenes.chain_settings(scenes.Options(), 128).erode_rgb == 3


def test_the_ground_truth_thread_finds_tfds_imported_before_it_starts():
  # TFDS imports under etils' lazy_imports, which swaps the process-wide __import__: on the
  # background thread it would race with JAX's imports on the main thread. A fresh process,
  # as no other test may have imported TFDS yet; the thread records what it found.
  code = """
import sys
from ivid_jax.demos import scenes
assert 'tensorflow_datasets' not in sys.modules
scenes.heldout_scenes = lambda *a: 'tensorflow_datasets' in sys.modules
print(scenes.start_heldout_scenes(32, [0]).result())
"""
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == 'True'


def test_side_by_side_puts_true_views_left_and_generated_right():
  v, n = 3, 4
  true = np.zeros((v, n, n, 4), np.float32)
  gen = np.ones((v, n, n, 4), np.float32)
  true[..., 3] = gen[..., 3] = 0.5
  out = scenes.side_by_side(true, gen, [(2, 0, 1)])
  p = images.GRID_PADDING
  tile = lambda row, col: out[p + row * (n + p):p + row * (n + p) + n,
                              p + col * (n + p):p + col * (n + p) + n]
  assert out.shape == (p + 2 * (n + p), p + 7 * (n + p), 3)
  assert (tile(0, 0) == 0).all() and (tile(0, 4) == 1).all()  # true black | generated white
  assert (tile(0, 3) == 1).all()  # the gap column
  np.testing.assert_allclose(tile(1, 0), images.colorize_depth(np.full((n, n), 0.5)))


def test_scores_of_the_true_views_are_perfect():
  truth = scenes.heldout_scenes(16, [2], 'solid')[2]
  views = ground_truth.sampler_views(truth)

  class Condition:  # the first half of every view shown, its depth too
    mask_rgb = np.zeros((26, 16, 16, 1), bool)
    mask_rgb[:, :8] = True
    mask = mask_rgb

  s = scenes.score_against_truth(views, Condition, truth)
  assert s['psnr_all'] == s['psnr_shown'] == s['psnr_inpainted'] == ground_truth.PSNR_CAP
  assert s['shown_share'] == 0.5
  # Depth beyond the sampler's far plane (5) saturates at z = 1, and depth_error clips the
  # truth to the same range; what is left is float32 rounding of the z round trip.
  assert s['depth_abs_rel'] < 1e-5
  assert s['depth_abs_rel_known'] < 1e-5 and s['depth_abs_rel_unknown'] < 1e-5
  assert s['psnr_per_view'] == [ground_truth.PSNR_CAP] * 26


def test_the_shipped_models_are_the_synthetic_configs_exported_ema_networks():
  from ivid_jax.configs import synthetic_cond  # pylint: disable=g-import-not-at-top
  from ivid_jax.configs import synthetic_uncond  # pylint: disable=g-import-not-at-top
  total = 0
  for kind, config in (('uncond', synthetic_uncond.get_config()),
                       ('cond', synthetic_cond.get_config())):
    path = scenes.shipped_model(kind)
    total += os.path.getsize(path)
    mf = model_file.load(path, expect_kind=kind)
    assert mf.meta['weights'].startswith('EMA') and mf.meta['step'] > 0
    assert mf.meta['config']['input']['tfds_config'] == config.input.tfds_config
    for field in ('image_size', 'in_channels', 'model_channels', 'channel_mult', 'num_classes'):
      assert tuple(np.atleast_1d(getattr(mf.model, field))) == tuple(
          np.atleast_1d(config.model[field])), field
  assert total <= 20 * 2 ** 20  # the budget for the repository


def test_class_names_and_labels():
  assert scenes.parse_classes('spheres,room,2', 5) == [0, 4, 2]
  assert scenes.parse_classes(('boxes', 1), 5) == [1, 1]
  with pytest.raises(ValueError, match='unknown class'):
    scenes.parse_classes('chairs', 5)
  with pytest.raises(ValueError, match='outside 0..4'):
    scenes.parse_classes('7', 5)
  with pytest.raises(ValueError, match='give labels'):
    scenes.parse_classes('room', 1000)


def test_missing_and_misplaced_model_files_are_named(tmp_path, tiny_synthetic_model_files,
                                                     monkeypatch):
  monkeypatch.setitem(scenes.SHIPPED, 'uncond', 'models/absent_uncond.msgpack')
  with pytest.raises(FileNotFoundError, match=r'models/absent_uncond\.msgpack.*--uncond'):
    scenes.shipped_model('uncond')
  missing = str(tmp_path / 'nope.msgpack')
  with pytest.raises(FileNotFoundError, match='nope.msgpack'):
    scenes.run_demo(str(tmp_path), uncond=missing, cond=tiny_synthetic_model_files['cond'],
                    log=None)
  with pytest.raises(ValueError, match=r'synthetic_cond\.msgpack.*cond'):
    scenes.run_demo(str(tmp_path), uncond=tiny_synthetic_model_files['cond'],
                    cond=tiny_synthetic_model_files['cond'], log=None)


def test_the_command_names_a_missing_model_file(tmp_path, tiny_synthetic_model_files):
  result = subprocess.run(
      [sys.executable, '-m', 'ivid_jax.main', 'demo', f'--uncond={tmp_path}/nope.msgpack',
       f'--cond={tiny_synthetic_model_files["cond"]}', f'--out={tmp_path}'], capture_output=True,
      text=True, timeout=300, check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f'ivid-jax demo: error: {tmp_path}/nope.msgpack: no such model file']


@pytest.mark.slow
def test_the_default_demo_with_the_shipped_models_within_five_minutes(tmp_path):
  """README command 1 as a user runs it (the shipped models, default settings)."""
  result = subprocess.run([sys.executable, '-m', 'ivid_jax.main', 'demo', f'--out={tmp_path}'],
                          capture_output=True, text=True, timeout=1200, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.load(open(tmp_path / 'demo.json'))
  assert len(report['scenes']) == len(scenes.DEFAULT_CLASSES)
  for scene in report['scenes']:
    for key in ('grid_rgb', 'grid_depth', 'gif', 'scene'):
      assert os.path.isfile(scene[key]), key
    assert math.isfinite(scene['metrics']['reprojection']['psnr'])
  assert report['image_to_3d']['view0_max_abs'] == 0.0
  orbit = report['orbit']  # spheres, a full turn in 27 views, its grid 4x enlarged
  assert orbit['class_name'] == 'spheres' and os.path.isfile(orbit['gif'])
  assert scene_io.read_scene(orbit['scene']).views.shape == (27, 32, 32, 4)
  with Image.open(orbit['grid_rgb']) as im:
    assert im.size == (2 + 9 * (4 * 32 + 2), 2 + 3 * (4 * 32 + 2))
  # Its wall time is measured by benchmarks/demo_quality.py (row (c)), not asserted here.
  assert report['times']['total'] > 0
