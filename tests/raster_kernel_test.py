"""The rasteriser's XLA:CPU kernel: the jnp rasteriser's fragments and accumulations, thread-count independent, clear fallbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivid_jax.geometry import cameras
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import mesh as mesh_lib
from ivid_jax.geometry import raster
from ivid_jax.geometry import raster_kernel
from ivid_jax.geometry import render
from ivid_jax.rendering import fusion
from ivid_jax.sampling import aggregate

import cpu_kernel

# Two of the reference's swing frames, a side and the middle.
FRAMES = [0, 4]


def test_the_kernel_builds_where_a_compiler_is_present():
  # On CPUs the kernel is the default path: a machine with a compiler where it does not build
  # would silently fall back to jnp (several times slower), so this fails instead of skipping.
  cpu_kernel.require()
  assert raster_kernel.resolve('auto') == 'cpu'


@pytest.fixture
def needs_kernel():
  """Skips without a compiler; fails where one is present and the kernel does not build."""
  cpu_kernel.require()


def _warp_meshes(fbwarp_ref):
  """The training warp's first render: view 0's mesh (128 px skirt) in camera V1, two cases."""
  d = depth_lib.linearize_depth(jnp.asarray(fbwarp_ref['rgbd'][:2, ..., 3]), 0.5, 100.0)
  mv0 = jnp.broadcast_to(cameras.view0(), (2, 4, 4))
  meshes = mesh_lib.batched_depth_to_mesh(d, mv0, padding=128)
  clip = raster.project(meshes.positions, jnp.asarray(fbwarp_ref['modelview1'][:2]),
                        cameras.perspective(45.0, 0.1, 200.0))
  return clip, meshes.faces


def _assert_same_fragments(got, want, max_ties=0):
  face, bary, depth, front = (np.asarray(a) for a in got)
  # Samples a last-bit tie on a shared edge may give to the other face (none measured).
  differ = face != np.asarray(want.face)
  assert differ.sum() <= max_ties
  same = ~differ
  np.testing.assert_array_equal(bary[same], np.asarray(want.bary)[same])
  np.testing.assert_array_equal(depth[same], np.asarray(want.depth)[same])
  np.testing.assert_array_equal(front, np.asarray(want.front))


@pytest.mark.usefixtures('needs_kernel')
def test_rasterize_gives_the_jnp_rasterisers_fragments(fbwarp_ref):
  clip, faces = _warp_meshes(fbwarp_ref)
  kw = dict(height=384, width=384, near=0.1, far=200.0)
  want = raster.rasterize(clip, faces, **kw)
  assert np.mean(np.asarray(want.face) >= 0) > 0.9
  _assert_same_fragments(raster_kernel.rasterize(clip, faces, **kw), want)


@pytest.mark.usefixtures('needs_kernel')
def test_rasterize_culls_and_clips_at_the_near_plane_as_the_jnp_rasteriser():
  # A wavy grid seen from so close that the near plane cuts it (faces behind the camera, faces
  # crossing the near plane: homogeneous edges), then with its faces turned round (all back
  # faces) and half of them culled.
  n = 24
  y, x = np.mgrid[0:n, 0:n] / (n - 1) * 2.0 - 1.0
  depth = jnp.asarray(1.0 + 0.3 * np.sin(3 * x) * np.cos(2 * y), jnp.float32)
  m = mesh_lib.depth_to_mesh(depth, cameras.view0(), padding=4)
  eye_mv = cameras.look_at(jnp.array([0.05, 0.02, 0.08]), jnp.array([0.0, 0.0, -1.0]))
  clip = raster.project(m.positions[None], eye_mv[None], cameras.perspective(60.0, 0.1, 50.0))
  w = np.asarray(clip[0, :, 3])
  assert (w < 0).any() and (w < 0.1).mean() > 0.3 and (w > 0.1).mean() > 0.3
  kw = dict(height=96, width=80, near=0.1, far=50.0)
  cull = jnp.asarray(np.random.default_rng(0).random(m.faces.shape[:1]) < 0.5)[None]
  coverage = []
  for faces, c in ((m.faces[None], None), (m.faces[None, :, ::-1], cull)):
    want = raster.rasterize(clip, faces, cull_back=c, **kw)
    coverage.append(np.mean(np.asarray(want.face) >= 0))
    _assert_same_fragments(raster_kernel.rasterize(clip, faces, cull_back=c, **kw), want)
  # Measured: 82% of the samples drawn, 38% once half the (now back) faces are culled.
  assert coverage[0] > 0.7 and 0.2 < coverage[1] < 0.6


@pytest.fixture(scope='module')
def scene(aggregate_ref):
  return (jnp.asarray(aggregate_ref['views']), jnp.asarray(aggregate_ref['modelviews']),
          jnp.asarray(aggregate_ref['render_modelviews'][FRAMES]))


@pytest.fixture(scope='module')
def supersampled(scene):
  """The 640-px accumulated fusion frames of both paths, before the Lanczos filter."""
  views, mvs, targets = scene
  meshes = render.view_meshes(views, mvs, near=depth_lib.SAMPLE_NEAR, far=depth_lib.SAMPLE_FAR,
                              padding=fusion.FUSION_PADDING)
  valid = jnp.ones(len(views), bool)
  args = (meshes, views[..., :3], mvs, valid, targets)
  kw = dict(size=128 * fusion.FUSION_SSAA, fov=45.0, render_near=fusion.FUSION_NEAR,
            render_far=fusion.FUSION_FAR)
  frames = lambda kernel: jax.jit(
      lambda *a: render.accumulate_views(*a, **kw, kernel=kernel))(*args)
  return args, kw, frames('jnp'), frames('cpu') if raster_kernel.available()[0] else None


@pytest.mark.usefixtures('needs_kernel')
def test_accumulate_draws_the_same_samples_as_the_jnp_path(supersampled):
  _, _, ref, out = supersampled
  color, depth = np.asarray(out.color), np.asarray(out.depth)
  ref_color, ref_depth = np.asarray(ref.color), np.asarray(ref.depth)
  # The same rasteriser arithmetic: the same samples drawn (measured: all 819,200) and the
  # same fragments, up to last-bit ties on triangle edges (measured: 4 samples with depth
  # off by more than 1e-5).
  drawn, ref_drawn = depth > fusion.FUSION_NEAR, ref_depth > fusion.FUSION_NEAR
  assert np.sum(drawn != ref_drawn) <= 20
  assert np.sum(~np.isclose(depth, ref_depth, rtol=1e-5)) <= 40
  np.testing.assert_array_equal(np.asarray(out.mask_depth), np.asarray(ref.mask_depth))
  np.testing.assert_array_equal(np.asarray(out.mask_color), np.asarray(ref.mask_color))
  # Colours are weighted means of angle weights exp(-20 acos(cos)); near cos = 1 a
  # last-bit difference in cos (XLA's and the kernel's float ops round alike, but not
  # every library call does) moves a weight by ~1%. Measured: mean |difference| 1e-5,
  # 169 values (0.02%) off by more than 0.01, half the samples bit-identical.
  diff = np.max(np.abs(color - ref_color), -1)
  assert np.mean(np.abs(color - ref_color)) < 1e-4
  assert np.mean(diff > 1e-2) < 1e-3
  assert np.mean(diff == 0) > 0.3


@pytest.mark.usefixtures('needs_kernel')
def test_both_paths_aggregate_the_same_conditions(aggregate_ref):
  views = jnp.asarray(aggregate_ref['views'])
  mvs = jnp.asarray(aggregate_ref['modelviews'])
  for j in (4, 8):
    c_jnp, c_cpu = (aggregate.aggregate_condition(views, mvs, jnp.arange(9) < j, mvs[j],
                                                  kernel=k) for k in ('jnp', 'cpu'))
    np.testing.assert_array_equal(np.asarray(c_cpu.mask), np.asarray(c_jnp.mask))
    np.testing.assert_array_equal(np.asarray(c_cpu.mask_rgb), np.asarray(c_jnp.mask_rgb))
    # Measured over views 1-8: z-buffer depths within 3e-7, the convex depth within 1.4e-5
    # (disparity sums that round differently); 8-bit colours at most 2 levels apart on up to
    # 4.9% of the values (view 4): near cos = 1 a last-bit difference in cos moves an angle
    # weight by ~1% (d acos / d cos is unbounded there), and these test views face the cameras.
    np.testing.assert_allclose(np.asarray(c_cpu.depth), np.asarray(c_jnp.depth), atol=1e-6)
    np.testing.assert_allclose(np.asarray(c_cpu.depth_convex), np.asarray(c_jnp.depth_convex),
                               atol=5e-5)
    diff = np.abs(np.asarray(c_cpu.color) - np.asarray(c_jnp.color))
    assert diff.max() <= 2 / 255 + 1e-6
    assert np.mean(diff > 0) < 0.06


@pytest.mark.usefixtures('needs_kernel')
def test_kernel_results_do_not_depend_on_the_thread_count(supersampled, fbwarp_ref, monkeypatch):
  args, kw, _, out = supersampled
  clip, faces = _warp_meshes(fbwarp_ref)
  rkw = dict(height=384, width=384, near=0.1, far=200.0)
  many = raster_kernel.rasterize(clip, faces, **rkw)
  monkeypatch.setenv('IVID_JAX_KERNEL_THREADS', '1')
  # Traced anew: the thread count is an attribute of the call.
  one = render.accumulate_views(*args, **kw, kernel='cpu')
  np.testing.assert_array_equal(np.asarray(one.color), np.asarray(out.color))
  np.testing.assert_array_equal(np.asarray(one.depth), np.asarray(out.depth))
  for a, b in zip(raster_kernel.rasterize(clip, faces, **rkw), many):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_kernel_can_be_turned_off_and_auto_falls_back(monkeypatch):
  monkeypatch.setattr(raster_kernel, '_state', {})
  monkeypatch.setenv('IVID_JAX_CPU_KERNEL', '0')
  ok, why = raster_kernel.available()
  assert not ok and 'IVID_JAX_CPU_KERNEL=0' in why
  assert raster_kernel.resolve('auto') == 'jnp'
  assert raster_kernel.resolve('jnp') == 'jnp'
  with pytest.raises(raster_kernel.KernelUnavailable,
                     match="kernel='cpu'.*IVID_JAX_CPU_KERNEL=0"):
    raster_kernel.resolve('cpu')
  with pytest.raises(ValueError, match='kernel must be one of'):
    raster_kernel.resolve('cuda')


def test_a_missing_compiler_is_named(monkeypatch, tmp_path):
  monkeypatch.setattr(raster_kernel, '_state', {})
  monkeypatch.setenv('IVID_JAX_CACHE_DIR', str(tmp_path))
  monkeypatch.setenv('CXX', str(tmp_path / 'no-such-c++'))
  ok, why = raster_kernel.available()
  assert not ok and 'no-such-c++' in why and 'set CXX' in why
  assert raster_kernel.resolve('auto') == 'jnp'


def test_a_failed_build_names_the_source_and_leaves_nothing(monkeypatch, tmp_path):
  bad = tmp_path / 'broken.cc'
  bad.write_text('this is not C++;\n')
  cache = tmp_path / 'cache'
  monkeypatch.setattr(raster_kernel, '_state', {})
  monkeypatch.setattr(raster_kernel, '_SOURCE', str(bad))
  monkeypatch.setenv('IVID_JAX_CACHE_DIR', str(cache))
  ok, why = raster_kernel.available()
  assert not ok and 'broken.cc' in why and 'failed' in why
  assert list(cache.iterdir()) == []  # no half-written library for a later run to load


@pytest.mark.usefixtures('needs_kernel')
def test_the_built_library_is_cached(monkeypatch, tmp_path):
  monkeypatch.setattr(raster_kernel, '_state', {})
  monkeypatch.setenv('IVID_JAX_CACHE_DIR', str(tmp_path))
  first = raster_kernel._build()
  stamp = (tmp_path / first.split('/')[-1]).stat().st_mtime_ns
  assert raster_kernel._build() == first
  assert (tmp_path / first.split('/')[-1]).stat().st_mtime_ns == stamp
  assert [p.name for p in tmp_path.iterdir()] == [first.split('/')[-1]]


def test_other_backends_keep_the_jnp_path(monkeypatch):
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert raster_kernel.resolve('auto') == 'jnp'
  with pytest.raises(raster_kernel.KernelUnavailable, match="CPU backend.*'gpu'"):
    raster_kernel.resolve('cpu')
