"""Schedules, the forward process, guidance, inputs, edits and the samplers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ivid_jax.diffusion import gaussian
from ivid_jax.diffusion import guidance
from ivid_jax.diffusion import samplers
from ivid_jax.diffusion import schedules
from ivid_jax.models import unet


def test_linear_schedule_matches_the_closed_form():
  s = schedules.make_schedule('linear', 1000)
  betas = np.asarray(s.betas)
  assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
  # float32 betas: their differences (2e-5) carry the rounding of the betas (measured 5e-5).
  np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-4)
  # Measured 6e-8 (float32 storage of a float64 product).
  np.testing.assert_allclose(s.alpha_bar, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)), rtol=1e-6)
  np.testing.assert_allclose(s.alpha_bar_prev[1:], s.alpha_bar[:-1])
  assert float(s.alpha_bar_prev[0]) == 1.0
  # Posterior q(x_{t-1} | x_t, x_0): variance beta (1 - a_prev) / (1 - a).
  t = 500
  a, ap, b = float(s.alpha_bar[t]), float(s.alpha_bar[t - 1]), float(s.betas[t])
  assert float(s.posterior_variance[t]) == pytest.approx(b * (1 - ap) / (1 - a), rel=1e-5)
  assert float(s.posterior_mean_coef_x0[t]) == pytest.approx(b * np.sqrt(ap) / (1 - a), rel=1e-5)
  assert float(s.posterior_log_variance[0]) == pytest.approx(np.log(float(s.posterior_variance[1])))


def test_cosine_schedule_follows_its_alpha_bar():
  s = schedules.make_schedule('cosine', 1000)
  f = lambda t: np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
  # Measured 6e-8 (float32 storage).
  np.testing.assert_allclose(s.alpha_bar[:900], [f(t + 1) / f(0) for t in range(900)], rtol=1e-6)
  with pytest.raises(ValueError, match='schedule'):
    schedules.make_schedule('sigmoid')


def test_q_sample_and_predictions_invert_each_other():
  s = schedules.make_schedule()
  k1, k2 = jax.random.split(jax.random.key(0))
  x0 = jax.random.normal(k1, (4, 8, 8, 4))
  eps = jax.random.normal(k2, x0.shape)
  t = jnp.array([0, 10, 500, 999])
  x_t = gaussian.q_sample(s, x0, t, eps)
  # At t = 999, sqrt(1 / alpha_bar) = 200 magnifies float32 rounding of x_t: measured 5.6e-5
  # (x0) and 1.8e-4 (eps).
  np.testing.assert_allclose(gaussian.predict_x0(s, x_t, t, eps), x0, atol=1e-3)
  np.testing.assert_allclose(gaussian.predict_eps(s, x_t, t, x0), eps, atol=1e-3)
  assert float(gaussian.eps_mse(eps, eps)) == 0.0


@pytest.mark.slow  # two UNet compilations; make_eps_fn's test covers the guided mix
def test_guidance_zero_is_the_conditional_prediction_and_w_mixes_the_halves():
  model = unet._TinyUNet()
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 4))
  t, c = jnp.array([10, 700]), jnp.array([2, 3])
  params = jax.jit(model.init)(jax.random.key(1), x, t, c)['params']
  params = jax.tree.map(lambda p: p + 0.02 * jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)
  jitted = jax.jit(model.apply)  # params as an argument, not baked into the program
  apply = lambda xx, tt, cc: jitted({'params': params}, xx, tt, cc)
  np.testing.assert_array_equal(guidance.guided_eps(apply, x, t, c, 0.0), apply(x, t, c))
  w = 3.0
  expected = (1 + w) * apply(x, t, c) - w * apply(x, t, jnp.array([-1, -1]))
  np.testing.assert_allclose(guidance.guided_eps(apply, x, t, c, w), expected, atol=1e-5)


def test_label_dropout_rate():
  dropped = guidance.drop_labels(jax.random.key(0), jnp.arange(20000) % 7)
  assert float(jnp.mean(dropped == -1)) == pytest.approx(0.1, abs=0.01)


def test_inpaint_inputs_order_and_noise_in_holes():
  b, n = 2, 8
  x_t = jnp.full((b, n, n, 4), 5.0)
  y = jnp.full((b, n, n, 4), 0.25)
  mask = jnp.zeros((b, n, n, 1)).at[:, :4].set(1.0)
  mask_rgb = jnp.zeros((b, n, n, 1)).at[:, :2].set(1.0)
  out = np.asarray(guidance.inpaint_inputs(jax.random.key(0), x_t, y, mask, mask_rgb))
  assert out.shape == (b, n, n, 10)
  np.testing.assert_array_equal(out[..., :4], 5.0)
  np.testing.assert_array_equal(out[..., 4:5], mask_rgb)
  np.testing.assert_array_equal(out[..., 9:10], mask)
  np.testing.assert_array_equal(out[:, :2, :, 5:8], 0.25)   # known RGB
  np.testing.assert_array_equal(out[:, :4, :, 8], 0.25)     # known depth
  holes = out[:, 2:, :, 5:8]
  assert abs(holes.mean()) < 0.2 and 0.8 < holes.std() < 1.2  # fresh N(0, 1) noise


def test_ddim_timesteps_are_the_authors():
  t, t_prev = samplers.ddim_timesteps(1000, 50)
  np.testing.assert_array_equal(t - 1, np.arange(999, 0, -20))
  np.testing.assert_array_equal(t_prev, t - 20)


def _oracle(x0_true):
  """eps_fn of a perfect model of a single data point x0_true."""
  s = schedules.make_schedule()

  def eps_fn(aux, key, x_t, t):
    del aux, key
    return gaussian.predict_eps(s, x_t, t, x0_true)

  return s, eps_fn


def test_samplers_recover_the_data_point_of_a_perfect_model():
  x0_true = jnp.linspace(-0.9, 0.9, 2 * 8 * 8 * 4).reshape(2, 8, 8, 4)
  s, eps_fn = _oracle(x0_true)
  x_T = jax.random.normal(jax.random.key(0), x0_true.shape)
  ddim = samplers.ddim_sample(eps_fn, None, jax.random.key(1), x_T, s, steps=25)
  # The last step returns the oracle's x_0: float32 rounding apart (measured 6e-8 and 2e-9).
  np.testing.assert_allclose(ddim, x0_true, atol=1e-6)
  ddpm = samplers.ddpm_sample(eps_fn, None, jax.random.key(1), x_T, s)
  np.testing.assert_allclose(ddpm, x0_true, atol=1e-6)


def test_clip_denoised_keeps_an_overshooting_prediction_in_range():
  # A perfect model of a data point outside [-1, 1]: unclipped, both samplers return it (the
  # authors' sampling); clipped, x_0 is clipped in every step and both return the clipped point.
  x0_true = jnp.linspace(-2.0, 2.0, 2 * 8 * 8 * 4).reshape(2, 8, 8, 4)
  s, eps_fn = _oracle(x0_true)
  x_T = jax.random.normal(jax.random.key(0), x0_true.shape)
  clipped = np.clip(np.asarray(x0_true), -1.0, 1.0)
  for clip, want in ((False, x0_true), (True, clipped)):
    ddim = samplers.ddim_sample(eps_fn, None, jax.random.key(1), x_T, s, steps=25,
                                clip_denoised=clip)
    # Measured: within 6e-8 (DDIM) and 2e-9 (DDPM) either way.
    np.testing.assert_allclose(ddim, want, atol=1e-6)
    ddpm = samplers.ddpm_sample(eps_fn, None, jax.random.key(1), x_T, s, clip_denoised=clip)
    np.testing.assert_allclose(ddpm, want, atol=1e-6)


# Reference 4.3 as a plain float64 numpy loop, written from the text, not from samplers.py.


def _stub_eps(x, t, xp=np):
  """A stand-in network whose output depends on both x_t and t (numpy, or jnp with xp=jnp)."""
  return 0.3 * x * xp.cos(t / 150.0) + 0.05 * xp.sin(t / 37.0)


def _linear_alpha_bar(steps=1000):
  return np.cumprod(1.0 - np.linspace(1e-4, 0.02, steps))


def _recording_eps_fn(log):
  def eps_fn(aux, key, x_t, t):
    del aux, key
    jax.debug.callback(lambda x, tt: log.append((np.asarray(x), np.asarray(tt))), x_t, t,
                       ordered=True)
    tt = t.astype(jnp.float32).reshape((-1,) + (1,) * (x_t.ndim - 1))
    return _stub_eps(x_t, tt, jnp)
  return eps_fn


def _step_noise(key, i, shape):
  """The sampler's documented noise of step i: the second half of split(fold_in(key, i))."""
  return np.asarray(jax.random.normal(jax.random.split(jax.random.fold_in(key, i))[1], shape))


def test_ddpm_every_step_matches_the_reference_loop():
  s = schedules.make_schedule()
  key = jax.random.key(5)
  x_T = jax.random.normal(jax.random.key(4), (2, 4, 4, 4))
  log = []
  out = np.asarray(samplers.ddpm_sample(_recording_eps_fn(log), None, key, x_T, s))
  assert [int(t[0]) for _, t in log] == list(range(999, -1, -1))
  ab = _linear_alpha_bar()
  ab_prev = np.append(1.0, ab[:-1])
  beta = np.linspace(1e-4, 0.02, 1000)
  var = beta * (1 - ab_prev) / (1 - ab)
  inputs = [x.astype(np.float64) for x, _ in log] + [out.astype(np.float64)]
  for i, t in enumerate(range(999, -1, -1)):
    x = inputs[i]
    x0 = np.sqrt(1 / ab[t]) * x - np.sqrt(1 / ab[t] - 1) * _stub_eps(x, t)
    mean = (beta[t] * np.sqrt(ab_prev[t]) / (1 - ab[t])) * x0 \
        + ((1 - ab_prev[t]) * np.sqrt(1 - beta[t]) / (1 - ab[t])) * x
    std = np.sqrt(var[t]) if t > 0 else 0.0
    expected = mean + std * _step_noise(key, i, x.shape)
    # One float32 step of values O(1): rounding of a few ulps, amplified by sqrt(1/ab) <= 160.
    np.testing.assert_allclose(inputs[i + 1], expected, rtol=1e-4, atol=1e-4, err_msg=f't={t}')


@pytest.mark.parametrize('steps,eta', [(50, 0.0), (20, 0.7)])
def test_ddim_every_step_matches_the_reference_loop(steps, eta):
  s = schedules.make_schedule()
  key = jax.random.key(8)
  x_T = jax.random.normal(jax.random.key(7), (2, 4, 4, 4))
  log = []
  out = np.asarray(samplers.ddim_sample(_recording_eps_fn(log), None, key, x_T, s, steps=steps,
                                        eta=eta))
  jump = 1000 // steps
  pairs = [(jump * (i + 1), jump * i) for i in range(steps - 1, -1, -1)]
  assert [int(t[0]) for _, t in log] == [t - 1 for t, _ in pairs]  # 999, 979, ... for 50
  ab = _linear_alpha_bar()
  inputs = [x.astype(np.float64) for x, _ in log] + [out.astype(np.float64)]
  for i, (t, t_prev) in enumerate(pairs):
    x = inputs[i]
    a, a_prev = ab[t - 1], (1.0 if t_prev == 0 else ab[t_prev - 1])
    x0 = np.sqrt(1 / a) * x - np.sqrt(1 / a - 1) * _stub_eps(x, t - 1)
    eps = (np.sqrt(1 / a) * x - x0) / np.sqrt(1 / a - 1)
    sigma = eta * np.sqrt((1 - a_prev) / (1 - a)) * np.sqrt(1 - a / a_prev)
    expected = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma ** 2) * eps
    if t_prev > 0:
      expected = expected + sigma * _step_noise(key, i, x.shape)
    np.testing.assert_allclose(inputs[i + 1], expected, rtol=1e-4, atol=1e-4, err_msg=f't={t}')


def test_make_eps_fn_guides_the_class_with_one_hole_noise_for_both_halves():
  model = unet._TinyUNet(in_channels=10)
  k = jax.random.split(jax.random.key(0), 4)
  x_t = jax.random.normal(k[0], (2, 16, 16, 4))
  y = jax.random.uniform(k[1], (2, 16, 16, 4), minval=-1, maxval=1)
  mask = (jax.random.uniform(k[2], (2, 16, 16, 1)) > 0.4).astype(jnp.float32)
  mask_rgb = mask.at[:, :8].set(0.0)
  t, c = jnp.array([3, 620]), jnp.array([1, 2])
  # Params from shapes alone (no init to compile), every layer non-zero.
  shapes = jax.eval_shape(model.init, k[3], jnp.zeros((2, 16, 16, 10)), t, c)['params']
  params = jax.tree.map(lambda p: 0.1 * jnp.sin(jnp.arange(p.size, dtype=jnp.float32) + 1.0
                                                ).reshape(p.shape), shapes)
  w, key = 2.5, jax.random.key(9)
  eps_fn = guidance.make_eps_fn(model, w, inpaint=True)
  assert guidance.make_eps_fn(model, w, inpaint=True) is eps_fn  # samplers compile once
  aux = {'params': params, 'classes': c, 'y': y, 'mask': mask, 'mask_rgb': mask_rgb}
  got = jax.jit(eps_fn)(aux, key, x_t, t)
  noise = jax.random.normal(key, y.shape)
  inputs = jnp.concatenate([x_t, mask_rgb, y[..., :3] * mask_rgb + noise[..., :3] * (1 - mask_rgb),
                            y[..., 3:] * mask + noise[..., 3:] * (1 - mask), mask], -1)
  apply = lambda cc: jax.jit(model.apply)({'params': params}, inputs, t, cc)
  np.testing.assert_allclose(got, (1 + w) * apply(c) - w * apply(jnp.array([-1, -1])),
                             rtol=1e-4, atol=1e-5)


def test_ddim_eta0_is_deterministic_and_eta1_is_not():
  x0_true = jnp.zeros((1, 4, 4, 4))
  s = schedules.make_schedule()
  eps_fn = lambda aux, key, x, t: 0.5 * x  # a stub network
  x_T = jax.random.normal(jax.random.key(0), x0_true.shape)
  a = samplers.ddim_sample(eps_fn, None, jax.random.key(1), x_T, s, steps=10)
  b = samplers.ddim_sample(eps_fn, None, jax.random.key(2), x_T, s, steps=10)
  np.testing.assert_array_equal(a, b)
  c = samplers.ddim_sample(eps_fn, None, jax.random.key(1), x_T, s, steps=10, eta=1.0)
  d = samplers.ddim_sample(eps_fn, None, jax.random.key(2), x_T, s, steps=10, eta=1.0)
  assert not np.allclose(c, d)


def test_inpaint_edit_rules():
  n = 4
  cond = jnp.full((1, n, n, 4), 1.0)
  mask = jnp.zeros((1, n, n, 1)).at[:, :2].set(1.0)
  mask_rgb = jnp.zeros((1, n, n, 1)).at[:, :1].set(1.0)
  convex = jnp.full((1, n, n, 1), 0.5)
  e = samplers.InpaintEdit(cond, mask, mask_rgb, convex)
  x0 = jnp.zeros((1, n, n, 4))
  out = np.asarray(samplers.inpaint_edit(e, x0, jnp.array(False)))
  np.testing.assert_allclose(out[0, 0, :, :3], 0.1)   # replace_rgb inside mask_rgb
  np.testing.assert_allclose(out[0, 1, :, :3], 0.0)   # outside mask_rgb
  np.testing.assert_allclose(out[0, :2, :, 3], 0.2)   # replace_depth inside mask
  np.testing.assert_allclose(out[0, 2:, :, 3], 0.25)  # 0.5 max(0, 0.5) + 0.5 * 0 outside
  last = np.asarray(samplers.inpaint_edit(e, x0, jnp.array(True)))
  np.testing.assert_allclose(last[0, 0, :, :3], 0.0)  # no RGB replacement on the last step
  np.testing.assert_allclose(last[..., 3], out[..., 3])
  always = np.asarray(samplers.inpaint_edit(e._replace(replace_rgb_last=True), x0,
                                            jnp.array(True)))
  np.testing.assert_allclose(always, out)  # ... unless asked for: then as on the other steps


@pytest.mark.slow  # 300 optimiser steps; the trainer's tests show a falling loss by default
def test_tiny_unet_overfits_one_batch():
  model = unet._TinyUNet()
  s = schedules.make_schedule()
  keys = jax.random.split(jax.random.key(0), 4)
  x0 = jnp.tanh(jax.random.normal(keys[0], (4, 16, 16, 4)))
  eps = jax.random.normal(keys[1], x0.shape)
  t = jnp.array([50, 300, 600, 900])
  c = jnp.array([0, 1, 2, -1])
  x_t = gaussian.q_sample(s, x0, t, eps)
  params = jax.jit(model.init)(keys[2], x_t, t, c)['params']
  tx = optax.adamw(3e-3, weight_decay=0.0)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    loss, grads = jax.value_and_grad(
        lambda p: gaussian.eps_mse(model.apply({'params': p}, x_t, t, c), eps))(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  losses = []
  for _ in range(300):
    params, opt, loss = step(params, opt)
    losses.append(float(loss))
  assert losses[0] > 0.5 and min(losses[-10:]) < losses[0] / 10
