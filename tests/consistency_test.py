"""3D consistency: closed forms, and ground-truth synthetic scenes against shuffled ones."""

import numpy as np
import pytest

from ivid_jax.evaluation import consistency
from ivid_jax.evaluation import ground_truth
from ivid_jax.geometry import cameras
from ivid_jax.geometry import mesh as mesh_lib
from ivid_jax.geometry import raster

# A random permutation of the 27 views of the 3x9 set (cameras kept in place); it moves
# every view (a test below checks), most of them several steps of the grid away.
_SHUFFLE = np.random.RandomState(6).permutation(27)


@pytest.fixture(scope='module')
def scenes():
  """Ground truth: synthetic_rgbd test scenes 0 and 2 at 64 px (4 rendered in one compiled call)."""
  rendered = ground_truth.synthetic_scenes(64, 'test', 0, 4)
  return [rendered[0], rendered[2]]


def _shuffled(scene):
  return scene._replace(rgb=scene.rgb[_SHUFFLE], depth=scene.depth[_SHUFFLE])


def test_the_shuffle_moves_every_view():
  assert not np.any(_SHUFFLE == np.arange(27))


def test_neighbor_pairs_of_the_3x9_set():
  _, _, modelviews = ground_truth_cameras()
  pairs = consistency.neighbor_pairs(modelviews, k=2)
  as_set = {tuple(p) for p in pairs.tolist()}
  assert all((j, i) in as_set for i, j in as_set)  # both directions
  assert np.bincount(pairs[:, 0], minlength=27).min() >= 2
  # View 0 (yaw 0, pitch 0): its nearest are 0.15 rad away, the pitch neighbours 1 and 2 first.
  assert {j for i, j in as_set if i == 0} >= {1, 2}
  angle = lambda i, j: np.arccos(np.clip(modelviews[i, 2, :3] @ modelviews[j, 2, :3], -1, 1))
  assert max(angle(i, j) for i, j in as_set) == pytest.approx(0.15, abs=1e-4)


def ground_truth_cameras():
  from ivid_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  yaw, pitch, mv = synthetic.view_cameras()
  return np.asarray(yaw)[:27], np.asarray(pitch)[:27], np.asarray(mv)[:27]


def test_epipolar_distance_vanishes_on_true_correspondences():
  # Points lifted from view i (the mesh module's unprojection) and projected into view j with
  # OpenGL's projection: an independent path from the fundamental matrix's algebra.
  size = 64
  mv_i = np.asarray(cameras.orbit_camera(0.2, -0.1, 1.1))
  mv_j = np.asarray(cameras.orbit_camera(-0.25, 0.12, 0.9))
  rng = np.random.RandomState(0)
  depth = rng.uniform(0.8, 4.0, (size, size)).astype(np.float32)
  points, _ = mesh_lib.unproject(depth)
  rows, cols = rng.randint(0, size, 50), rng.randint(0, size, 50)
  cam = np.asarray(points)[rows, cols]
  world = cam @ np.linalg.inv(mv_i)[:3, :3].T + np.linalg.inv(mv_i)[:3, 3]
  clip = np.asarray(raster.project(world, mv_j, cameras.perspective(45.0, 0.1, 100.0)))
  ndc = clip[:, :2] / clip[:, 3:]
  x_j = np.stack([(ndc[:, 0] + 1) / 2 * size, (1 - ndc[:, 1]) / 2 * size], 1)
  x_i = np.stack([cols + 0.5, rows + 0.5], 1)
  f = consistency.fundamental_matrix(mv_i, mv_j, size)
  # float32 points and projection: ~1e-4 px at worst.
  assert consistency.symmetric_epipolar_distance(f, x_i, x_j).max() < 1e-3
  # Other pixels of view j: far off the epipolar lines.
  assert np.median(consistency.symmetric_epipolar_distance(f, x_i, x_j[::-1])) > 1.0


def test_flatness_of_planes_and_of_a_real_scene(scenes):
  size = 32
  y, x = np.mgrid[0:size, 0:size] / size - 0.5
  tilted_plane = 1.0 / (0.8 + 0.3 * x - 0.2 * y)  # disparity affine in the pixel coordinates
  constant = np.full((size, size), 2.0)
  bump = 1.0 / (0.8 + 0.3 * x) - 0.5 * np.exp(-((x ** 2 + y ** 2) / 0.02))
  flat = np.asarray(consistency.flatness(np.stack([tilted_plane, constant, bump])))
  assert flat[0] == pytest.approx(1.0, abs=1e-5) and flat[1] == 1.0
  assert flat[2] < 0.9  # measured 0.58: a bump of half the depth range is not a plane
  # Synthetic scenes (objects in front of a backdrop): far from one plane.
  assert np.asarray(consistency.flatness(scenes[0].depth)).mean() < 0.7


def test_reprojection_of_ground_truth_is_near_its_ceiling_and_shuffled_far_below(scenes):
  for scene in scenes:
    pairs = consistency.neighbor_pairs(scene.modelview)
    # Called as score_scene calls it (fov passed), so eval-3d's test reuses the compilation.
    run = lambda s: consistency.reprojection_summary(consistency.reprojection_pairs(
        s.rgb.astype(np.float32) / 255.0, s.depth, s.modelview, pairs, fov=s.fov))
    true, shuffled = run(scene), run(_shuffled(scene))
    # Depth: the ceiling is 1 (every warped depth within 2 %); measured 0.9986-0.9989, abs rel
    # 1e-4 to 2e-4 (mesh interpolation between pixel centres). Shuffled: 0.24-0.27 and 0.21-0.23.
    assert true['depth_inliers'] > 0.99 and true['abs_rel'] < 2e-3, true
    assert shuffled['depth_inliers'] < 0.5 and shuffled['abs_rel'] > 0.05, shuffled
    # Colour: nearest-texel resampling of antialiased 64 px textures caps ground truth at
    # 33.0 / 36.7 dB on these scenes; shuffled views land at 15.9 / 21.1 dB.
    assert true['psnr'] > 30 and shuffled['psnr'] < true['psnr'] - 10, (true, shuffled)
    assert true['pairs'] == len(pairs)


def test_reprojection_summary_of_exact_and_inexact_pairs():
  # Four pairs of a 1,000-pixel target: exact, MSE 1e-4 (40 dB), MSE 1e-6 (60 dB), and one
  # whose overlap (5 px) is under 1 % of the target, left out.
  overlap = np.array([100.0, 200.0, 50.0, 5.0], np.float32)
  mse = np.array([0.0, 1e-4, 1e-6, 0.5])
  scores = consistency.PairScores(
      overlap=overlap, sq_error=(3.0 * overlap * mse).astype(np.float32),
      abs_rel=np.zeros(4, np.float32), depth_inliers=overlap,
      pixels=np.full(4, 1000.0, np.float32))
  out = consistency.reprojection_summary(scores)
  assert out['pairs'] == 3 and out['pairs_skipped'] == 1
  assert out['psnr'] == pytest.approx((100.0 + 40.0 + 60.0) / 3, abs=1e-3)
  assert out['psnr_median'] == pytest.approx(60.0, abs=1e-3)
  assert out['exact_pairs'] == pytest.approx(1 / 3)
  assert out['coverage'] == pytest.approx(355.0 / 4000.0)


def test_tsed_passes_almost_every_match_of_ground_truth(scenes):
  scene = scenes[0]
  pairs = consistency.neighbor_pairs(scene.modelview)
  true = consistency.tsed_summary(consistency.tsed_pairs(scene.rgb, scene.modelview, pairs))
  shuffled = consistency.tsed_summary(consistency.tsed_pairs(
      _shuffled(scene).rgb, scene.modelview, pairs))
  # Ground truth: every neighbour pair consistent (median SED 0.44 px at 256 px, limit 2 px);
  # the 10 % of matches that fail are SIFT mismatches between repeated texture patterns.
  assert true['tsed'] == 1.0 and true['match_pass'] > 0.85, true
  # Shuffled: 0.09 of pairs and 0.14 of matches pass (a few shuffled views still sit next to
  # their true neighbours); the median match lands 22 px off its epipolar line.
  assert shuffled['tsed'] < 0.2 and shuffled['match_pass'] < 0.2, shuffled
  assert shuffled['median_sed'] > 10 * true['median_sed']
