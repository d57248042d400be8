"""Reporting: clu's TensorBoard writer when TensorFlow is there, the TF-free fallback otherwise."""

import glob
import json
import os

import numpy as np
import pytest
from PIL import Image

import ddim_reference

from ivid_jax.training import previews
from ivid_jax.training import reporting


def test_basic_writer_writes_jsonl_and_png(tmp_path):
  writer = reporting.BasicWriter(str(tmp_path))
  writer.write_scalars(3, {'loss': np.float32(0.5), 'lr': 1e-4})
  writer.write_images(3, {'preview': np.zeros((1, 4, 6, 3), np.float32) + 0.5})
  writer.write_hparams({'optim.lr': 1e-4, 'model.channel_mult': (1, 2)})
  writer.write_texts(0, {'parameters': '12 parameters'})
  writer.close()
  lines = [json.loads(x) for x in open(tmp_path / 'metrics.jsonl', encoding='utf-8')]
  assert lines[0] == {'step': 3, 'scalars': {'loss': 0.5, 'lr': 1e-4}}
  image = np.asarray(Image.open(lines[1]['images']['preview']))
  assert image.shape == (4, 6, 3) and np.all(image == 128)
  assert lines[2]['hparams'] == {'optim.lr': 1e-4, 'model.channel_mult': '(1, 2)'}


def test_auto_falls_back_to_the_basic_writer_without_tensorflow(tmp_path, monkeypatch):
  monkeypatch.setattr(reporting, 'tensorboard_available', lambda: False)
  writer = reporting.create_writer(str(tmp_path), 'auto')
  assert isinstance(writer, reporting.BasicWriter)
  progress = reporting.make_progress(num_train_steps=10, writer=writer, every_steps=5,
                                     kind='auto')
  assert isinstance(progress, reporting.BasicProgress)
  assert not progress(1, t=0.0) and progress(5, t=2.0)  # 4 steps in 2 s
  writer.flush()
  line = json.loads(open(tmp_path / 'metrics.jsonl', encoding='utf-8').readline())
  assert line == {'step': 5, 'scalars': {'steps_per_sec': 2.0}}
  with pytest.raises(ImportError, match=r"ivid-jax\[tensorboard\]"):
    reporting.create_writer(str(tmp_path), 'clu')


def test_clu_writer_writes_tensorboard_events(tmp_path):
  if not reporting.tensorboard_available():
    pytest.skip('TensorFlow/tensorboard not installed (pip install ivid-jax[tensorboard])')
  writer = reporting.create_writer(str(tmp_path), 'auto')
  assert not isinstance(writer, reporting.BasicWriter)
  writer.write_scalars(1, {'loss': 0.25})
  writer.write_images(1, {'preview': np.zeros((1, 8, 8, 3), np.float32)})
  writer.flush()
  writer.close()
  events = glob.glob(os.path.join(tmp_path, 'events.out.tfevents.*'))
  assert events and os.path.getsize(events[0]) > 100
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  progress = reporting.make_progress(num_train_steps=10, writer=writer, every_steps=5,
                                     kind='auto')
  assert isinstance(progress, periodic_actions.ReportProgress)


def test_preview_depth_is_stretched_per_image_and_runs_from_bright_near_to_dark_far():
  # Depth in [-1, 1] of the model, and a second image in a narrower range: both stretch to
  # the whole map. Expected: matplotlib's inferno table at 255 (near), 128 and 0 (far), within
  # the polynomial fit's 8/255.
  z = np.linspace(-1, 1, 5, dtype=np.float32)[None, None, :].repeat(2, 1)  # near .. far
  x = np.zeros((2, 2, 5, 4), np.float32)
  x[0, ..., 3], x[1, ..., 3] = z[0], 0.1 * z[0] + 0.3
  _, rgb = previews.to_images(x)
  for i in range(2):
    np.testing.assert_allclose(rgb[i, 0, 0], [0.988362, 0.998364, 0.644924], atol=8.5 / 255)
    np.testing.assert_allclose(rgb[i, 0, 2], [0.735683, 0.215906, 0.330245], atol=8.5 / 255)
    np.testing.assert_allclose(rgb[i, 0, -1], [0.001462, 0.000466, 0.013866], atol=8.5 / 255)


def test_cond_grid_shows_condition_sample_target_with_magenta_holes():
  n, s = 2, 4
  x = np.zeros((n, s, s, 4), np.float32)
  mask = np.ones((n, s, s, 1), np.float32)
  mask[:, 0] = 0
  inputs = previews.Inputs(noise=x, labels=None, y=x, mask=mask, mask_rgb=mask, target=x + 1)
  picture = previews.grid(x - 1, inputs, 'cond')
  assert picture.shape == (n * s + (n - 1) * 2, 6 * s + 5 * 2, 3)
  np.testing.assert_array_equal(picture[0, 0], [1, 0, 1])  # a hole of the condition RGB
  np.testing.assert_array_equal(picture[1, 0], [0.5, 0.5, 0.5])  # y = 0 -> grey
  np.testing.assert_array_equal(picture[1, s + 2], [0, 0, 0])  # the sample, -1 -> black
  np.testing.assert_array_equal(picture[1, 2 * (s + 2)], [1, 1, 1])  # the target, +1 -> white


def test_basic_profile_traces_the_chosen_steps(tmp_path):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  profile = reporting.BasicProfile(logdir=str(tmp_path), first_step=2, num_steps=1)
  profile(1)
  assert not os.listdir(tmp_path)  # not started before first_step
  profile(2)
  jnp.ones(3).block_until_ready()
  profile(3)
  traces = glob.glob(os.path.join(tmp_path, '**', '*.xplane.pb'), recursive=True)
  assert traces and os.path.getsize(traces[0]) > 0


class _HalfX0:
  """A stand-in 'network' for the preview sampler: eps whose x_0 is half of x_t."""
  num_classes = None

  def apply(self, variables, x, t, classes):
    del variables, classes
    from ivid_jax.diffusion import gaussian  # pylint: disable=g-import-not-at-top
    from ivid_jax.diffusion import schedules  # pylint: disable=g-import-not-at-top
    return gaussian.predict_eps(schedules.make_schedule(), x, t, 0.5 * x)


def test_previews_sample_with_the_configs_ddim_eta():
  model = _HalfX0()
  # 16,384 values: the noise's std to 0.6%.
  inputs = previews.make_inputs(kind='uncond', num=4, image_size=32, num_classes=None, seed=0)
  got = {eta: previews.sample({}, inputs, model=model, kind='uncond', steps=5, guidance_w=0.0,
                              eta=eta).astype(np.float64) for eta in (0.0, 1.0)}
  # With x_0 = x_t / 2 every DDIM step is linear: eta 0 gives gain * x_T exactly (the gain from
  # the hand-written recursion of tests/ddim_reference.py), float32 rounding apart.
  gain, _ = ddim_reference.half_x0_ddim(steps=5, eta=0.0)
  np.testing.assert_allclose(got[0.0], gain * inputs.noise, rtol=1e-5)
  # eta 1 adds independent Gaussian noise of the std the recursion gives (0.0 at eta 0).
  gain, std = ddim_reference.half_x0_ddim(steps=5, eta=1.0)
  residual = got[1.0] - gain * inputs.noise
  # The std of 16,384 normal draws is known to 0.6% (1 / sqrt(2n)): 0.03 is 5 of that.
  np.testing.assert_allclose(residual.std(), std, rtol=0.03)
  # Zero mean, uncorrelated with x_T: both known to 1 / sqrt(n) = 0.008, so 0.03 is 4 of that.
  assert abs(residual.mean()) < 0.03 * std
  assert abs(np.corrcoef(residual.ravel(), inputs.noise.ravel())[0, 1]) < 0.03
