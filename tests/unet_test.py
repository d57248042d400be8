"""The ADM UNet: parity with the authors' network, the null class, dtypes, remat."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivid_jax.models import convert
from ivid_jax.models import unet

DATA = os.path.join(os.path.dirname(__file__), 'data')


@pytest.fixture(scope='module')
def ported():
  ref = np.load(os.path.join(DATA, 'adm_small_ref.npz'))
  args = json.loads(str(ref['config_json']))
  model, params = convert.load_torch_state_dict(
      convert.read_state_dict(os.path.join(DATA, 'adm_small_ref.npz')), args)
  return ref, model, params


def test_matches_the_authors_unet_on_all_reference_inputs(ported):
  ref, model, params = ported
  x = jnp.asarray(ref['input/x']).transpose(0, 2, 3, 1)  # NCHW -> NHWC
  y = jax.jit(model.apply)({'params': params}, x, jnp.asarray(ref['input/t']),
                           jnp.asarray(ref['input/classes']))
  expected = ref['output/y'].transpose(0, 2, 3, 1)
  # timesteps 0, 417, 999; labels 3, null, the last one.
  np.testing.assert_array_equal(ref['input/t'], [0, 417, 999])
  assert np.abs(np.asarray(y) - expected).max() <= 1e-4


def test_null_label_is_the_zero_class_embedding(ported):
  ref, model, params = ported
  x = jnp.asarray(ref['input/x']).transpose(0, 2, 3, 1)[:2]
  t = jnp.asarray([5, 500])
  apply = jax.jit(model.apply)
  null = apply({'params': params}, x, t, jnp.array([-1, -1]))
  none = apply({'params': params}, x, t, None)
  np.testing.assert_allclose(null, none, atol=1e-6)
  labelled = apply({'params': params}, x, t, jnp.array([0, 0]))
  assert np.abs(np.asarray(labelled - null)).max() > 1e-3


def test_timestep_embedding_is_cos_first_on_raw_timesteps():
  e = np.asarray(unet.timestep_embedding(jnp.array([0, 7]), 8))
  np.testing.assert_allclose(e[0], [1, 1, 1, 1, 0, 0, 0, 0], atol=1e-7)
  freqs = np.exp(-np.log(10000) * np.arange(4) / 4)
  np.testing.assert_allclose(e[1], np.concatenate([np.cos(7 * freqs), np.sin(7 * freqs)]),
                             rtol=1e-5, atol=1e-6)


def _tiny_setup():
  model = unet._TinyUNet()
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 4))
  t, c = jnp.array([3, 900]), jnp.array([1, -1])
  params = jax.jit(model.init)(jax.random.key(1), x, t, c)['params']
  perturbed = jax.tree.map(lambda p: p + 0.01 * jnp.sin(jnp.arange(p.size).reshape(p.shape)),
                           params)
  return model, x, t, c, params, perturbed


def _loss(p, m, x, t, c):
  return jnp.mean(m.apply({'params': p}, x, t, c) ** 2)


_grad = jax.jit(jax.grad(_loss), static_argnums=1)


def test_tiny_unet_shapes_gradients_and_dtype():
  model, x, t, c, params, perturbed = _tiny_setup()
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  apply = jax.jit(model.apply)
  # The zero-initialised output conv makes the first output exactly 0.
  np.testing.assert_array_equal(apply({'params': params}, x, t, c), 0.0)
  grads = _grad(perturbed, model, x, t, c)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  y16 = jax.jit(unet._TinyUNet(dtype=jnp.bfloat16).apply)({'params': perturbed}, x, t, c)
  y32 = apply({'params': perturbed}, x, t, c)
  assert y16.dtype == jnp.float32  # the output head runs in float32
  # bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2% per operation); through
  # the tiny net's ~15 layers they add up to 0.64% of the output scale (max error / max |y|,
  # measured). 5% allows deeper accumulation and still fails for a lost cast or an overflow.
  np.testing.assert_allclose(y16, y32, atol=0.05 * float(jnp.abs(y32).max()))


@pytest.mark.slow  # one more compilation of the UNet's gradient (about 30 s on 2 cores)
def test_remat_gives_the_same_gradients():
  model, x, t, c, _, perturbed = _tiny_setup()
  grads = _grad(perturbed, model, x, t, c)
  remat_grads = _grad(perturbed, unet._TinyUNet(remat=True), x, t, c)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(remat_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_bad_inputs_are_rejected():
  model = unet._TinyUNet()
  with pytest.raises(ValueError, match='x must be'):
    model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 4)), jnp.zeros((1,)), None)
  with pytest.raises(ValueError, match='unknown backbone arguments'):
    unet.from_backbone_args({'image_size': 8, 'bogus': 1})


@pytest.mark.parametrize('null', [True, False])
def test_labels_outside_the_table_are_an_error_eagerly_and_at_the_host(null):
  model = unet._TinyUNet(has_null_class=null)
  x = jnp.zeros((2, 16, 16, 4))
  t = jnp.zeros((2,), jnp.int32)
  params = jax.jit(model.init)(jax.random.key(0), x, t, jnp.zeros((2,), jnp.int32))
  bad = jnp.array([0, -1 if not null else 4])
  with pytest.raises(ValueError, match='class labels must be 0..3'):
    model.apply(params, x, t, bad)
  with pytest.raises(ValueError, match='class labels must be 0..3'):
    unet.check_labels(np.asarray(bad), 4, null)
  # Under jit there is no check: a host callback would synchronise every training step.
  assert 'callback' not in jax.jit(model.apply).lower(params, x, t, bad).as_text()
  if null:
    assert jnp.isfinite(jax.jit(model.apply)(params, x, t, jnp.array([3, -1]))).all()
