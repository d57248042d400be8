"""The exact renderer's XLA:CPU kernel: same frames as the jnp path, thread-count independent, clear fallbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import render
from ivid_jax.rendering import cpu_kernel
from ivid_jax.rendering import fusion

# Two of the reference's swing frames, a side and the middle.
FRAMES = [0, 4]


def _kernel_ok():
  return jax.default_backend() == 'cpu' and cpu_kernel.available()[0]


needs_kernel = pytest.mark.skipif(not _kernel_ok(), reason='needs the CPU backend and a C++ compiler')


@pytest.fixture(scope='module')
def scene(aggregate_ref):
  return (jnp.asarray(aggregate_ref['views']), jnp.asarray(aggregate_ref['modelviews']),
          jnp.asarray(aggregate_ref['render_modelviews'][FRAMES]))


@pytest.fixture(scope='module')
def supersampled(scene):
  """The 640-px accumulated frames of both paths, before the Lanczos filter."""
  views, mvs, targets = scene
  meshes = render.view_meshes(views, mvs, near=depth_lib.SAMPLE_NEAR, far=depth_lib.SAMPLE_FAR,
                              padding=fusion.FUSION_PADDING)
  valid = jnp.ones(len(views), bool)
  args = (meshes, views[..., :3], mvs, valid, targets)
  kw = dict(size=128 * fusion.FUSION_SSAA, fov=45.0)
  jnp_out = jax.jit(lambda *a: fusion._exact_frames(*a, **kw))(*args)
  cpu_out = jax.jit(lambda *a: fusion._kernel_frames(*a, **kw))(*args)
  return args, kw, jnp_out, cpu_out


@needs_kernel
def test_kernel_draws_the_same_samples_as_the_jnp_path(supersampled):
  _, _, ref, out = supersampled
  color, depth = np.asarray(out.color), np.asarray(out.depth)
  ref_color, ref_depth = np.asarray(ref.color), np.asarray(ref.depth)
  # The same rasteriser arithmetic: the same samples drawn (measured: all 819,200) and the
  # same fragments, up to last-bit ties on triangle edges (measured: 4 samples with depth
  # off by more than 1e-5).
  drawn, ref_drawn = depth > fusion.FUSION_NEAR, ref_depth > fusion.FUSION_NEAR
  assert np.sum(drawn != ref_drawn) <= 20
  assert np.sum(~np.isclose(depth, ref_depth, rtol=1e-5)) <= 40
  # Colours are weighted means of angle weights exp(-20 acos(cos)); near cos = 1 a
  # last-bit difference in cos (XLA's and the kernel's float ops round alike, but not
  # every library call does) moves a weight by ~1%. Measured: mean |difference| 1e-5,
  # 169 values (0.02%) off by more than 0.01, half the samples bit-identical.
  diff = np.max(np.abs(color - ref_color), -1)
  assert np.mean(np.abs(color - ref_color)) < 1e-4
  assert np.mean(diff > 1e-2) < 1e-3
  assert np.mean(diff == 0) > 0.3


@needs_kernel
def test_kernel_frames_do_not_depend_on_the_thread_count(supersampled, monkeypatch):
  args, kw, _, out = supersampled
  monkeypatch.setenv('IVID_JAX_KERNEL_THREADS', '1')
  one = fusion._kernel_frames(*args, **kw)  # traced anew: the thread count is an attribute
  np.testing.assert_array_equal(np.asarray(one.color), np.asarray(out.color))
  np.testing.assert_array_equal(np.asarray(one.depth), np.asarray(out.depth))


def test_kernel_can_be_turned_off_and_auto_falls_back(monkeypatch):
  monkeypatch.setattr(cpu_kernel, '_state', {})
  monkeypatch.setenv('IVID_JAX_CPU_KERNEL', '0')
  ok, why = cpu_kernel.available()
  assert not ok and 'IVID_JAX_CPU_KERNEL=0' in why
  assert fusion.resolve_kernel('auto') == 'jnp'
  assert fusion.resolve_kernel('jnp') == 'jnp'
  with pytest.raises(cpu_kernel.KernelUnavailable, match="kernel='cpu'.*IVID_JAX_CPU_KERNEL=0"):
    fusion.resolve_kernel('cpu')
  with pytest.raises(ValueError, match='kernel must be one of'):
    fusion.resolve_kernel('cuda')


def test_a_missing_compiler_is_named(monkeypatch, tmp_path):
  monkeypatch.setattr(cpu_kernel, '_state', {})
  monkeypatch.setenv('IVID_JAX_CACHE_DIR', str(tmp_path))
  monkeypatch.setenv('CXX', str(tmp_path / 'no-such-c++'))
  ok, why = cpu_kernel.available()
  assert not ok and 'no-such-c++' in why and 'set CXX' in why
  assert fusion.resolve_kernel('auto') == 'jnp'


def test_a_failed_build_names_the_source_and_leaves_nothing(monkeypatch, tmp_path):
  bad = tmp_path / 'broken.cc'
  bad.write_text('this is not C++;\n')
  cache = tmp_path / 'cache'
  monkeypatch.setattr(cpu_kernel, '_state', {})
  monkeypatch.setattr(cpu_kernel, '_SOURCE', str(bad))
  monkeypatch.setenv('IVID_JAX_CACHE_DIR', str(cache))
  ok, why = cpu_kernel.available()
  assert not ok and 'broken.cc' in why and 'failed' in why
  assert list(cache.iterdir()) == []  # no half-written library for a later run to load


@needs_kernel
def test_the_built_library_is_cached(monkeypatch, tmp_path):
  monkeypatch.setattr(cpu_kernel, '_state', {})
  monkeypatch.setenv('IVID_JAX_CACHE_DIR', str(tmp_path))
  first = cpu_kernel._build()
  stamp = (tmp_path / first.split('/')[-1]).stat().st_mtime_ns
  assert cpu_kernel._build() == first
  assert (tmp_path / first.split('/')[-1]).stat().st_mtime_ns == stamp
  assert [p.name for p in tmp_path.iterdir()] == [first.split('/')[-1]]


def test_other_backends_keep_the_jnp_path(monkeypatch):
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert fusion.resolve_kernel('auto') == 'jnp'
  with pytest.raises(cpu_kernel.KernelUnavailable, match="CPU backend.*'gpu'"):
    fusion.resolve_kernel('cpu')
