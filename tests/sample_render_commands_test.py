"""`ivid-jax sample` and `ivid-jax render` end to end on tiny model files, and their errors."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from ivid_jax.models import model_file
from ivid_jax.models import unet
from ivid_jax.rendering import scene_videos
from ivid_jax.rendering import trajectories
from ivid_jax.sampling import sampler
from ivid_jax.sampling import scene_io


def _ivid(*args, timeout=900, env=None):
  result = subprocess.run([sys.executable, '-m', 'ivid_jax.main', *args], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env=None if env is None else {**os.environ, **env})
  return result


def test_sample_then_render_writes_scenes_grids_videos_and_meshes(tmp_path, tiny_model_files):
  out = tmp_path / 'run'
  result = _ivid('sample', f'--uncond={tiny_model_files["uncond"]}',
                 f'--cond={tiny_model_files["cond"]}', '--viewset=3x9', '--seeds=4-5',
                 '--steps_uncond=2', '--steps_cond=2', '--guidance=0.5', '--batch_size=2',
                 f'--out={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  scenes = scene_io.list_scenes(str(out))
  assert [os.path.basename(s) for s in scenes] == ['scene_class000_seed00004.npz',
                                                    'scene_class001_seed00005.npz']
  scene = scene_io.read_scene(scenes[1])
  assert scene.views.shape == (27, 16, 16, 4) and (scene.seed, scene.label) == (5, 1)
  grid = Image.open(out / 'grids' / 'depth_class001_seed00005.png')
  assert grid.size == (2 + 9 * 18, 2 + 3 * 18)
  assert os.path.exists(out / 'conds' / 'rgb_cond_class000_seed00004.png')
  # The authors' 128 px constants scaled to the tiny networks' 16 px; their x_0 blends kept.
  settings = json.loads((out / 'run.json').read_text())['settings']
  assert settings['erode_rgb'] == 1
  assert settings['atol'] == settings['rtol'] == pytest.approx(0.03 * 128 / 16)
  assert (settings['replace_rgb'], settings['replace_depth']) == (0.1, 0.2)
  assert settings['replace_rgb_last'] is False

  # The same --out again is refused (before any network is loaded) unless --overwrite.
  again = _ivid('sample', '--uncond=nope.msgpack', '--cond=nope.msgpack', f'--out={out}')
  assert again.returncode == 1, again.stderr[-2000:]
  assert again.stderr.strip().splitlines() == [
      f'ivid-jax sample: error: {out}: the output folder already holds files; pass '
      '--overwrite to write into it, or choose another --out']

  rendered = tmp_path / 'render'
  result = _ivid('render', f'--scenes={out}', f'--out={rendered}', '--frames=4',
                 '--mode=preview', '--export=ply,glb,points', '--video=gif')
  assert result.returncode == 0, result.stderr[-3000:]
  gif = Image.open(rendered / 'videos' / 'scene_class001_seed00005.gif')
  assert gif.n_frames == 4 and gif.size == (16, 16)
  assert os.path.exists(rendered / 'videos' / 'scene_class001_seed00005_depth.gif')
  for suffix in ('.ply', '.glb', '_points.ply'):
    assert os.path.getsize(rendered / 'exports' / f'scene_class000_seed00004{suffix}') > 100


def test_the_demo_preset_and_explicit_flags_over_it(tmp_path, tiny_model_files):
  out = tmp_path / 'run'
  result = _ivid('sample', f'--uncond={tiny_model_files["uncond"]}',
                 f'--cond={tiny_model_files["cond"]}', '--viewset=uncond', '--seeds=3',
                 '--preset=demo', '--steps_uncond=2', '--noclip_denoised', '--classes=1',
                 f'--out={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  run = json.loads((out / 'run.json').read_text())
  # The demo preset's values (sampler_flags.PRESETS['demo'], written out here by hand) ...
  assert run['preset'] == 'demo' and run['guidance'] == 3.0
  assert (run['settings']['steps_cond'], run['settings']['eta'],
          run['settings']['eta_uncond']) == (20, 1.0, 1.0)
  assert (run['settings']['replace_rgb'], run['settings']['replace_depth'],
          run['settings']['replace_rgb_last']) == (1.0, 1.0, True)
  # ... and the explicit flags over them.
  assert run['settings']['steps_uncond'] == 2 and run['settings']['clip_denoised'] is False
  assert run['seeds'] == [3] and run['classes'] == [1]
  assert [os.path.basename(s) for s in scene_io.list_scenes(str(out))] == [
      'scene_class001_seed00003.npz']


def test_a_network_of_the_wrong_kind_is_a_one_line_error(tmp_path, tiny_model_files):
  result = _ivid('sample', f'--uncond={tiny_model_files["cond"]}',
                 f'--cond={tiny_model_files["cond"]}', f'--out={tmp_path}')
  assert result.returncode == 1
  (line,) = result.stderr.strip().splitlines()
  assert line.startswith('ivid-jax sample: error: ')
  assert 'cond.msgpack: this is the cond network' in line


def test_missing_mismatched_and_misplaced_networks_are_named(tmp_path, tiny_model_files):
  with pytest.raises(FileNotFoundError, match='nope.msgpack: no such model file'):
    sampler.load_networks(str(tmp_path / 'nope.msgpack'), tiny_model_files['cond'])
  with pytest.raises(ValueError, match='uncond.msgpack: this is the uncond network'):
    sampler.load_networks(tiny_model_files['uncond'], tiny_model_files['uncond'])
  # A conditional network for 32 px views next to the 16 px unconditional one.
  fields = dict(model_file.load(tiny_model_files['cond']).meta['unet'], image_size=32)
  net = unet.UNet(**fields)
  shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), np.zeros((1, 32, 32, 10)),
                                           np.zeros((1,), np.int32), np.zeros((1,), np.int32)))
  params = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes['params'])
  path = model_file.save(tmp_path / 'cond32.msgpack', unet=fields, params=params)
  with pytest.raises(ValueError, match='cond32.msgpack: image size 32 does not match'):
    sampler.load_networks(tiny_model_files['uncond'], path)


def test_rendering_without_the_views_a_trajectory_needs_is_refused(tmp_path):
  one_view = scene_io.Scene(views=np.full((1, 8, 8, 4), 0.5, np.float32),
                            modelviews=np.eye(4, dtype=np.float32)[None], yaw=np.zeros(1),
                            pitch=np.zeros(1), seed=0, viewset='uncond')
  os.makedirs(tmp_path / 'scenes')
  scene_io.write_scene(str(tmp_path / 'scenes' / 'scene_seed00000.npz'), one_view)
  out = f'--out={tmp_path / "render"}'
  result = _ivid('render', f'--scenes={tmp_path}', out, '--frames=4', timeout=300)
  assert result.returncode == 1 and 'single view' in result.stderr
  # Asking for the CPU kernel where it cannot run says why (here: turned off).
  result = _ivid('render', f'--scenes={tmp_path}', out, '--frames=4', '--allow_holes',
                 '--kernel=cpu', timeout=300, env={'IVID_JAX_CPU_KERNEL': '0'})
  assert result.returncode == 1 and "kernel='cpu'" in result.stderr, result.stderr[-2000:]
  assert 'IVID_JAX_CPU_KERNEL=0' in result.stderr
  # Two views on the authors' 'random' protocol cannot carry the swing's +-0.6 rad of yaw.
  views = np.asarray(trajectories.modelviews(np.array([0.0, 0.2]), np.zeros(2)))
  with pytest.raises(ValueError, match=r'frame 3 of the trajectory is 0.54 rad .* --max_gap=0.25'):
    scene_videos.check_coverage(views, trajectories.modelviews(*trajectories.swing(8)), 0.25,
                                'scene.npz')
  scene_videos.check_coverage(views, trajectories.modelviews(np.array([0.1]), np.zeros(1)),
                              0.25, 'scene.npz')


@pytest.mark.slow
def test_image_to_3d_and_the_exact_renderer_from_the_command_line(tmp_path, tiny_model_files):
  rng = np.random.default_rng(0)
  Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / 'photo.png')
  out = tmp_path / 'run'
  result = _ivid('sample', f'--cond={tiny_model_files["cond"]}', f'--image={tmp_path}/photo.png',
                 '--depth_model=tiny-random', '--viewset=0,0;0.1,0;-0.1,0', '--seeds=0',
                 '--steps_cond=2', f'--out={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  scene = scene_io.read_scene(scene_io.list_scenes(str(out))[0])
  assert scene.label == -1 and scene.num_views == 3  # the null class for a photo
  photo = np.asarray(Image.open(tmp_path / 'photo.png').resize((21, 16), Image.LANCZOS))
  assert np.abs(scene.views[0, ..., :3] * 255 - photo[:, 2:18]).mean() < 3  # view 0: the photo
  result = _ivid('render', f'--scenes={out}', f'--out={out}', '--overwrite', '--traj=random',
                 '--mode=exact')
  assert result.returncode == 0, result.stderr[-3000:]
  assert Image.open(out / 'results' / 'scene_seed00000.png').size == (16, 16)


@pytest.mark.slow
def test_a_batch_sharded_over_eight_devices_equals_one_device(tiny_model_files):
  assert jax.device_count() == 8
  nets = sampler.load_networks(tiny_model_files['uncond'], tiny_model_files['cond'])
  settings = sampler.chain_lib.Settings(steps_uncond=2, steps_cond=2)
  sharded = next(sampler.generate(nets, range(8), viewset='random', batch_size=8,
                                  settings=settings))
  single = next(sampler.generate(nets, [2, 5], viewset='random', batch_size=2,
                                 settings=settings))
  np.testing.assert_array_equal(sharded.viewset.yaw[[2, 5]], single.viewset.yaw)
  # Measured max difference 5e-5 on O(1) values: XLA vectorises the batches differently.
  np.testing.assert_allclose(sharded.views[[2, 5]], single.views, rtol=1e-3, atol=1e-3)


def test_view_by_view_with_progress_is_the_one_program_chain(tiny_model_files):
  # The command line runs the chain view by view (one compiled step for all views, progress
  # reported between them, nothing the persistent compilation cache cannot store); the library
  # call without progress scans the same step in one program.
  nets = sampler.load_networks(tiny_model_files['uncond'], tiny_model_files['cond'])
  settings = sampler.chain_lib.Settings(steps_uncond=2, steps_cond=2)
  seen = []
  with sampler.chain_lib.progress_to(seen.append):
    stepwise = next(sampler.generate(nets, [0, 1], viewset='3x9', batch_size=2,
                                     settings=settings, progress=True))
  whole = next(sampler.generate(nets, [0, 1], viewset='3x9', batch_size=2, settings=settings))
  assert seen == list(range(27))
  steps = [fn for key, fn in sampler._COMPILED.items() if key[0] == '_compiled_steps']  # pylint: disable=protected-access
  assert len(steps) == 1 and steps[0][1]._cache_size() == 1  # one step program, 26 views
  np.testing.assert_array_equal(stepwise.views, whole.views)
  for a, b in zip(stepwise.conditions, whole.conditions):
    np.testing.assert_array_equal(a, b)
