"""The fused GroupNorm op and the UNet's CPU path: the plain expressions' values and gradients."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivid_jax.models import cpu_defaults
from ivid_jax.models import fused
from ivid_jax.models import unet


def _plain(x, gamma, beta, bias, scale, shift, *, groups, act):
  """The expression the UNet's XLA path computes (Flax's GroupNorm, eps 1e-5)."""
  bias = bias[:, None, None] if bias.ndim == 2 else bias
  y = nn.GroupNorm(num_groups=groups, epsilon=1e-5).apply(
      {'params': {'scale': gamma, 'bias': beta}}, x + bias)
  h = y * (1 + scale[:, None, None]) + shift[:, None, None]
  return jax.nn.silu(h) if act else h


@pytest.mark.parametrize('act,per_image_bias', [(True, False), (False, True)])
def test_group_norm_act_matches_autodiff_of_the_plain_expression(act, per_image_bias):
  b, h, w, c, groups = 2, 8, 6, 32, 8
  keys = jax.random.split(jax.random.key(0), 7)
  # An offset mean and a non-unit std, so that the statistics' gradients matter.
  x = 2.0 * jax.random.normal(keys[0], (b, h, w, c)) + 0.7
  gamma = 1 + 0.3 * jax.random.normal(keys[1], (c,))
  beta = 0.3 * jax.random.normal(keys[2], (c,))
  bias = 0.5 * jax.random.normal(keys[3], (b, c) if per_image_bias else (c,))
  scale = 0.3 * jax.random.normal(keys[4], (b, c))
  shift = 0.3 * jax.random.normal(keys[5], (b, c))
  cotangent = jax.random.normal(keys[6], (b, h, w, c))
  args = (x, gamma, beta, bias, scale, shift)
  plain = jax.jit(lambda *a: jax.vjp(lambda *v: _plain(*v, groups=groups, act=act), *a))
  ours = jax.jit(lambda *a: jax.vjp(lambda *v: fused.group_norm_act(
      v[0], v[1], v[2], groups=groups, eps=1e-5, bias=v[3], scale=v[4], shift=v[5], act=act),
                                    *a))
  y_plain, vjp_plain = plain(*args)
  y_ours, vjp_ours = ours(*args)
  # float32 rounding: the two sum in different orders (|y| and the gradients are O(1-30)).
  np.testing.assert_allclose(y_ours, y_plain, rtol=0, atol=4e-6)
  for name, g_ours, g_plain in zip(['x', 'gamma', 'beta', 'bias', 'scale', 'shift'],
                                   vjp_ours(cotangent), vjp_plain(cotangent)):
    scale_of = float(jnp.abs(g_plain).max())
    np.testing.assert_allclose(g_ours, g_plain, rtol=0, atol=2e-6 * max(scale_of, 1.0),
                               err_msg=name)
  with pytest.raises(ValueError, match='not divisible into 7 groups'):
    fused.group_norm_act(x, gamma, beta, groups=7, eps=1e-5)


@pytest.mark.parametrize('scale_shift', [
    True,  # the authors' networks' setting
    pytest.param(False, marks=pytest.mark.slow)])  # the same ops without FiLM: 30 s more
def test_fused_unet_is_the_xla_unet(scale_shift):
  """Same parameters (names, shapes, initial values); outputs and every gradient agree."""
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 4))
  t, c = jnp.array([3, 900]), jnp.array([1, -1])
  plain = unet._TinyUNet(impl='xla', use_scale_shift_norm=scale_shift)
  ours = unet._TinyUNet(impl='fused', use_scale_shift_norm=scale_shift)
  params = jax.jit(plain.init)(jax.random.key(1), x, t, c)['params']
  same = jax.jit(ours.init)(jax.random.key(1), x, t, c)['params']
  assert jax.tree.structure(same) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  # Away from the zero-initialised output layers, so that every gradient is non-trivial.
  params = jax.tree.map(lambda p: p + 0.05 * jnp.sin(jnp.arange(p.size).reshape(p.shape)),
                        params)

  def loss(p, model):
    return jnp.mean(jnp.square(model.apply({'params': p}, x, t, c) - x))

  grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  (l_plain, g_plain), (l_ours, g_ours) = grad(params, plain), grad(params, ours)
  np.testing.assert_allclose(l_ours, l_plain, rtol=1e-6)
  flat_plain = jax.tree_util.tree_leaves_with_path(g_plain)
  for (path, a), b in zip(flat_plain, jax.tree.leaves(g_ours)):
    # float32 rounding through about 20 layers, relative to the leaf's largest gradient: under
    # 2e-5 on the Intel Xeons this was written on, 2.6e-5 on a 2-core AMD EPYC (a middle-block
    # GroupNorm bias, a cancelling sum that XLA:CPU orders differently there), where a wrong
    # term of the VJP is O(1).
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * float(jnp.abs(a).max()) + 1e-9,
                               err_msg=jax.tree_util.keystr(path))


def test_auto_picks_the_fused_ops_on_cpu_only(monkeypatch):
  model = unet._TinyUNet()
  x, t, c = jnp.zeros((1, 16, 16, 4)), jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32)
  params = jax.eval_shape(model.init, jax.random.key(0), x, t, c)

  def has_custom_vjp(backend):
    monkeypatch.setattr(jax, 'default_backend', lambda: backend)
    jaxpr = jax.make_jaxpr(lambda p: model.apply(p, x, t, c))(params)
    return 'custom_vjp_call' in str(jaxpr)

  assert has_custom_vjp('cpu')
  assert not has_custom_vjp('tpu') and not has_custom_vjp('gpu')
  with pytest.raises(ValueError, match="impl must be"):
    unet._TinyUNet(impl='fast').init(jax.random.key(0), x, t, c)


def test_cpu_default_flag_is_set_unless_the_user_chose(monkeypatch):
  # This process imported ivid_jax before JAX started (tests/conftest.py adds only the device
  # count), so the flag is in effect: convolutions' gradients compile without YNNPACK.
  assert cpu_defaults.status == 'set', os.environ.get('XLA_FLAGS')
  assert cpu_defaults.FLAG in os.environ['XLA_FLAGS']
  monkeypatch.setattr(cpu_defaults, 'status', cpu_defaults.status)  # restored after the test
  x, w = jnp.ones((2, 8, 8, 32)), jnp.ones((3, 3, 32, 32))
  conv = lambda w: jnp.sum(jax.lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  hlo = jax.jit(jax.grad(conv)).lower(w).compile().as_text()
  assert 'convolution(' in hlo and '__ynn_fusion' not in hlo
  monkeypatch.setattr(cpu_defaults, '_backends_initialised', lambda: False)
  for env, expected in [({'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type='}, 'user'),
                        ({'XLA_FLAGS': '', 'IVID_JAX_XLA_CPU_DEFAULTS': '0'}, 'opted-out'),
                        ({'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}, 'set')]:
    monkeypatch.delenv('IVID_JAX_XLA_CPU_DEFAULTS', raising=False)
    for key, value in env.items():
      monkeypatch.setenv(key, value)
    assert cpu_defaults.apply() == expected
    flags = os.environ['XLA_FLAGS']
    assert (cpu_defaults.FLAG in flags) == (expected == 'set')
    assert env['XLA_FLAGS'] in flags  # the user's flags are kept
  monkeypatch.setattr(cpu_defaults, '_backends_initialised', lambda: True)
  monkeypatch.setenv('XLA_FLAGS', '')
  assert cpu_defaults.apply() == 'too-late' and os.environ['XLA_FLAGS'] == ''
  monkeypatch.setattr(cpu_defaults, '_jaxlib_minor', lambda: (0, 11))
  assert cpu_defaults.apply() == 'untested-jaxlib'
