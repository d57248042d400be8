"""The sequential sampler: one compiled scan for every view, per-scene keys, every view set."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import ddim_reference

from ivid_jax.data import synthetic
from ivid_jax.diffusion import gaussian
from ivid_jax.diffusion import schedules
from ivid_jax.geometry import cameras
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import image as image_ops
from ivid_jax.rendering import fusion
from ivid_jax.sampling import chain
from ivid_jax.sampling import sampler
from ivid_jax.sampling import viewsets

_SETTINGS = chain.Settings(steps_uncond=2, steps_cond=2)


def _counting(eps_fn, traces):
  def counted(aux, key, x_t, t):
    traces.append(x_t.shape)  # runs once per trace, never per call of the compiled chain
    return eps_fn(aux, key, x_t, t)
  return counted


@pytest.fixture(scope='module')
def nets(tiny_model_files):
  loaded = sampler.load_networks(tiny_model_files['uncond'], tiny_model_files['cond'],
                                 guidance=1.0)
  traces = {'uncond': [], 'cond': []}
  wrap = lambda n, k: chain.Network(_counting(n.eps_fn, traces[k]), n.params, n.schedule)
  return wrap(loaded.uncond, 'uncond'), wrap(loaded.cond, 'cond'), traces


def _run(nets, seeds, viewset='3x9'):
  keys = sampler.scene_keys(seeds)
  vs = viewsets.make(viewset, keys)
  out = chain.chain(nets[0], nets[1], keys, jnp.asarray(seeds, jnp.int32) % 4,
                    cameras.orbit_camera(vs.yaw, vs.pitch), image_size=16, settings=_SETTINGS)
  return jax.tree.map(np.asarray, out)


@pytest.fixture(scope='module')
def runs(nets):
  grid = viewsets.make('3x9', num_scenes=1)
  custom = list(zip(grid.yaw[0, :9].tolist(), grid.pitch[0, :9].tolist()))
  custom += [(0.5 + 0.01 * i, 0.2) for i in range(18)]  # other cameras after view 8
  return {'a': _run(nets, [0, 1]), 'again': _run(nets, [0, 1]), 'swapped': _run(nets, [1, 0]),
          'other_later_views': _run(nets, [0, 1], custom)}


def test_one_trace_and_one_compilation_for_every_view_and_batch(nets, runs):
  _, _, traces = nets
  # 26 conditional views and 4 calls: the denoiser was traced once per network.
  assert len(traces['cond']) == 1 and len(traces['uncond']) == 1
  assert chain._chain_jit._cache_size() == 1  # pylint: disable=protected-access
  assert runs['a'].views.shape == (2, 27, 16, 16, 4)
  assert runs['a'].conditions.mask.shape == (2, 26, 16, 16, 1)


def test_a_seed_gives_the_same_scene_in_any_batch_position(runs):
  np.testing.assert_array_equal(runs['a'].views, runs['again'].views)
  # Batch neighbours do not matter. XLA may vectorise the two positions differently, so
  # allow float rounding (measured max difference: 0).
  np.testing.assert_allclose(runs['swapped'].views[0], runs['a'].views[1], rtol=1e-5, atol=1e-5)
  assert not np.allclose(runs['a'].views[0], runs['a'].views[1])


def test_a_view_does_not_depend_on_the_views_after_it(runs):
  np.testing.assert_array_equal(runs['other_later_views'].views[:, :9], runs['a'].views[:, :9])
  assert not np.allclose(runs['other_later_views'].views[:, 9:], runs['a'].views[:, 9:])


def test_conditions_come_from_the_earlier_views(runs):
  cond = runs['a'].conditions
  mask, mask_rgb = cond.mask, cond.mask_rgb
  assert np.all(mask_rgb <= mask) and set(np.unique(mask)) <= {0.0, 1.0}
  # The tiny random networks make noise-like views, yet neighbouring cameras share pixels.
  assert mask.mean() > 0.0
  np.testing.assert_array_equal(cond.color * (1 - mask_rgb), 0.0)


def test_classes_and_seeds_are_checked():
  with pytest.raises(ValueError, match='class labels must be in 0..3'):
    sampler.choose_classes([0, 1], '2,7', 4)
  with pytest.raises(ValueError, match='2 classes given for 3 seeds'):
    sampler.choose_classes([0, 1, 2], '1,2', 4)
  np.testing.assert_array_equal(sampler.choose_classes([5, 6, 9], 'mod', 4), [1, 2, 1])
  np.testing.assert_array_equal(sampler.choose_classes([5, 6, 9], 'uniform', 4), [0, 1, 2])
  np.testing.assert_array_equal(sampler.choose_classes([5, 6], '-1', 4, allow_null=True), [-1, -1])
  assert sampler.choose_classes([1], None, None) is None
  assert sampler.parse_int_list('0-3,7') == [0, 1, 2, 3, 7]


# ---------------------------------------------------------------------------------------------
# An oracle: a stand-in 'model' that knows the true views of a synthetic scene.

_SCHEDULE = schedules.make_schedule()


def _oracle_eps(aux, key, x_t, t):
  """eps of a perfect denoiser of the true view `aux['view']` (aux['params']: true views)."""
  del key
  x0 = lax.dynamic_index_in_dim(aux['params'], aux['view'], keepdims=True)
  return gaussian.predict_eps(_SCHEDULE, x_t, t, x0)


def _psnr(a, b, where):
  mse = np.mean((np.asarray(a) - np.asarray(b))[np.broadcast_to(where, np.shape(a))] ** 2)
  return 10 * np.log10(1.0 / max(mse, 1e-12))


@pytest.fixture(scope='module')
def oracle():
  """A synthetic scene: the chain over 9 cameras with the oracle, and 4 held-out true views."""
  grid = viewsets.make('3x9', num_scenes=1)
  yaw = np.concatenate([grid.yaw[0, :9], [0.075, -0.075, 0.075, -0.075]])
  pitch = np.concatenate([grid.pitch[0, :9], [0.075, 0.075, -0.075, -0.075]])
  mvs = cameras.orbit_camera(yaw, pitch)
  scene = synthetic.sample_scenes(jax.random.key(0), 3, 1)  # a tabletop
  truth = synthetic.render_scenes(scene, mvs, size=32, ssaa=3)
  true_views = jnp.concatenate([truth.rgb[0], truth.zbuffer[0]], -1)  # z: near 0.5 / far 100
  net = chain.Network(_oracle_eps, true_views * 2.0 - 1.0, _SCHEDULE)
  # The synthetic depth is stored with the data's near/far; the chain lifts it with the same.
  settings = chain.Settings(steps_cond=2, near=depth_lib.TRAIN_NEAR, far=depth_lib.TRAIN_FAR)
  out = chain.chain(None, net, sampler.scene_keys([0]), None, mvs[None, :9],
                    true_views[None, 0], image_size=32, settings=settings)
  frames = fusion.render_scene(out.views[0], mvs[:9], mvs[9:], near=depth_lib.TRAIN_NEAR,
                               far=depth_lib.TRAIN_FAR)
  return jax.tree.map(np.asarray, (true_views, out, frames))


def test_the_oracle_chain_reproduces_the_true_views(oracle):
  true_views, out, _ = oracle
  views = out.views[0]
  # RGB: the last DDIM step returns the oracle's x_0 (the RGB edit skips it): float32 rounding
  # of x_t -> eps -> x_0 apart (measured 7e-7).
  np.testing.assert_allclose(views[:9, ..., :3], true_views[:9, ..., :3], atol=1e-5)
  # Depth: inside the mask 0.2 of the condition is blended in, which itself is the truth
  # warped through the earlier views' meshes.
  assert _psnr(views[:9, ..., 3], true_views[:9, ..., 3], True) >= 40.0
  cond = out.conditions
  for j in range(8):
    mask_rgb, mask = cond.mask_rgb[0, j] > 0.5, cond.mask[0, j] > 0.5
    assert mask.mean() > 0.5, j
    # The conditions are the true views where they are valid (measured >= 33 dB at 32 px,
    # where a pixel is a large share of every depth edge).
    assert _psnr(cond.color[0, j], true_views[j + 1, ..., :3], mask_rgb) >= 30.0, j
    assert _psnr(cond.depth[0, j], true_views[j + 1, ..., 3:], mask) >= 30.0, j


def test_the_renderer_reproduces_held_out_true_views(oracle):
  true_views, _, (color, depth) = oracle
  for f in range(4):
    covered = depth[f][..., 0] > fusion.FUSION_NEAR
    assert covered.mean() > 0.9, f
    true = true_views[9 + f]
    # Away from depth edges (83-85% of the pixels): measured 34.8-37.8 dB. On the one-pixel
    # bands along depth edges the authors' resampling (nearest texel at 5x, then Lanczos)
    # differs from the ray caster's box filter at 32 px: over all covered pixels 28.6-31.2
    # dB, as for the true views rendered at their own cameras (29-31 dB).
    smooth = np.asarray(image_ops.erode(depth_lib.depth_edge(true[..., 3], 0.03, 0.03), 3))
    assert _psnr(color[f], true[..., :3], (covered & smooth)[..., None]) >= 30.0, f
    assert _psnr(color[f], true[..., :3], covered[..., None]) >= 27.0, f


# ---------------------------------------------------------------------------------------------
# Settings reach the steps they name.

def _overshooting_eps(aux, key, x_t, t):
  """eps of a 'network' whose x_0 is 3 everywhere: far outside [-1, 1]."""
  del aux, key
  return gaussian.predict_eps(_SCHEDULE, x_t, t, jnp.full_like(x_t, 3.0))


def test_the_chain_clips_x0_and_erodes_the_condition_as_its_settings_say():
  mvs = cameras.orbit_camera(jnp.asarray([0.0, 0.15]), jnp.asarray([0.0, 0.05]))
  # View 0: a colour ramp on a wall at z-buffer depth 0.5, with a nearer square in front.
  ramp = jnp.broadcast_to(jnp.linspace(0.1, 0.9, 16)[None, :, None], (16, 16, 3))
  z = jnp.full((16, 16, 1), 0.5).at[5:11, 5:11].set(0.3)
  view0 = jnp.concatenate([ramp, z], -1)
  settings = chain.Settings(steps_cond=2, near=depth_lib.TRAIN_NEAR, far=depth_lib.TRAIN_FAR,
                            clip_denoised=True, erode_rgb=1)
  meshes = chain._meshes(view0[None], mvs[:1], settings)  # pylint: disable=protected-access
  cond = chain.view_condition(meshes, view0[None, ..., :3], mvs[:1], jnp.ones(1, bool), mvs[1],
                              settings, 'jnp')
  # Radius 1 keeps most of the colour (measured 101 of 138 pixels; radius 3, the authors'
  # 128 px constant, keeps 11 here).
  assert float(cond.mask_rgb.sum()) > 0.6 * float(cond.mask.sum()) > 0
  net = chain.Network(_overshooting_eps, None, _SCHEDULE)
  view = jax.jit(lambda c, k: chain.next_view(net, k, None, c, 1, settings))(
      cond, jax.random.key(0))
  # The last DDIM step returns x_0 unedited in RGB: 3, clipped to 1 (3 when not clipped).
  np.testing.assert_allclose(np.asarray(view[..., :3]), 1.0, atol=1e-5)
  # Full replacement on the last step too: the shown colour is the condition's own.
  full = settings._replace(replace_rgb=1.0, replace_rgb_last=True)
  view = jax.jit(lambda c, k: chain.next_view(net, k, None, c, 1, full))(
      cond, jax.random.key(0))
  shown = np.asarray(cond.mask_rgb[..., 0]) > 0.5
  rgb = np.asarray(view[0, ..., :3]) / 2 + 0.5
  np.testing.assert_allclose(rgb[shown], np.asarray(cond.color)[shown], atol=1e-5)
  np.testing.assert_allclose(rgb[~shown], 1.0, atol=1e-5)


def _linear_eps(aux, key, x_t, t):
  """eps of a 'network' whose x_0 is half of x_t: the DDIM path depends on its noise."""
  del aux, key
  return gaussian.predict_eps(_SCHEDULE, x_t, t, 0.5 * x_t)


def test_view_0_is_drawn_with_the_settings_ddim_eta():
  net = chain.Network(_linear_eps, None, _SCHEDULE)
  key, shape = jax.random.key(3), (1, 64, 64, 4)  # 16,384 values: the noise's std to 0.6%
  first = jax.jit(lambda k, eta: chain._first_view(net, k, None, shape, 10, False, eta))  # pylint: disable=protected-access
  got = {eta: np.asarray(first(key, eta), np.float64) for eta in (0.0, 1.0)}
  # x_T of view 0: a normal draw with the first of the two keys split from the scene's key
  # folded with the view index, 0.
  noise_key = jax.random.split(jax.random.fold_in(key, 0))[0]
  x_T = np.asarray(jax.random.normal(noise_key, shape))  # pylint: disable=invalid-name
  # With x_0 = x_t / 2 every DDIM step is linear: eta 0 gives gain * x_T exactly (the gain from
  # the hand-written recursion of tests/ddim_reference.py), float32 rounding apart (measured
  # max difference 4e-7 of the largest value).
  gain, _ = ddim_reference.half_x0_ddim(steps=10, eta=0.0)
  np.testing.assert_allclose(got[0.0], gain * x_T, rtol=1e-5)
  # eta 1 adds independent Gaussian noise of the std the recursion gives (0.0 at eta 0).
  gain, std = ddim_reference.half_x0_ddim(steps=10, eta=1.0)
  residual = got[1.0] - gain * x_T
  # The std of 16,384 normal draws is known to 0.6% (1 / sqrt(2n)): 0.03 is 5 of that (measured
  # 0.07%).
  np.testing.assert_allclose(residual.std(), std, rtol=0.03)
  # Zero mean, uncorrelated with x_T: both known to 1 / sqrt(n) = 0.008, so 0.03 is 4 of that.
  assert abs(residual.mean()) < 0.03 * std
  assert abs(np.corrcoef(residual.ravel(), x_T.ravel())[0, 1]) < 0.03


def test_the_authors_pixel_constants_scale_with_the_resolution():
  assert [chain.scaled_erode_rgb(n) for n in (16, 32, 64, 128, 256)] == [1, 1, 2, 3, 6]
  assert chain.for_resolution(128) == chain.Settings()  # the authors' settings at 128 px
  s = chain.for_resolution(32, steps_cond=7)
  assert (s.erode_rgb, s.steps_cond) == (1, 7)
  np.testing.assert_allclose([s.atol, s.rtol], [0.12, 0.12])
  assert chain.for_resolution(32, erode_rgb=2).erode_rgb == 2
