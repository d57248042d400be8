"""Export: the fused mesh and point cloud, PLY and GLB files, videos."""

import json
import struct

import numpy as np
import pytest
from PIL import Image

from ivid_jax.geometry import cameras
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.rendering import export
from ivid_jax.sampling import scene_io

N = 24


def _plane_view(yaw):
  """A view of the textured plane z = -1 (world) from the orbit camera at `yaw`: RGBD [N, N, 4]."""
  mv = np.asarray(cameras.orbit_camera(yaw, 0.0))
  f = 1.0 / np.tan(np.radians(22.5))
  c = (np.arange(N) + 0.5) / N * 2 - 1
  ray = np.stack(np.broadcast_arrays(c[None, :] / f, -c[:, None] / f, -np.ones((N, 1))), -1)
  rot, trans = mv[:3, :3], mv[:3, 3]
  origin = -rot.T @ trans
  dirs = ray @ rot  # camera -> world directions (rows of R are the camera axes)
  s = (-1.0 - origin[2]) / dirs[..., 2]
  point = origin + s[..., None] * dirs
  depth = s  # the ray has camera z = -1 per unit, so s is the linear depth
  color = np.stack([0.5 + 0.4 * np.sin(3 * point[..., 0]), 0.5 + 0.4 * np.cos(2 * point[..., 1]),
                    np.full((N, N), 0.3)], -1)
  z = np.asarray(depth_lib.project_depth(depth, 0.6, 5.0))
  return np.concatenate([color, z[..., None]], -1).astype(np.float32), mv


@pytest.fixture(scope='module')
def scene():
  (v0, m0), (v1, m1) = _plane_view(0.0), _plane_view(0.3)
  return scene_io.Scene(views=np.stack([v0, v1]), modelviews=np.stack([m0, m1]).astype(np.float32),
                        yaw=np.array([0, 0.3], np.float32), pitch=np.zeros(2, np.float32))


@pytest.fixture(scope='module')
def fused(scene):
  return export.fuse(scene)


def test_fusion_keeps_each_surface_point_once(fused):
  # Two views of one plane: every kept point lies on it, and the overlap is kept once.
  np.testing.assert_allclose(fused.positions[:, 2], -1.0, atol=1e-4)
  kept = fused.points.sum()
  assert N * N < kept < 1.6 * N * N
  assert len(fused.faces) > 0 and fused.faces.max() < len(fused.positions)
  np.testing.assert_allclose(np.linalg.norm(fused.normals, axis=-1), 1.0, atol=1e-5)
  assert np.all(fused.normals[:, 2] > 0.99)  # towards the cameras (+z)


def _parse_ply(data):
  header, body = data.split(b'end_header\n', 1)
  lines = header.decode('ascii').splitlines()
  assert lines[:2] == ['ply', 'format binary_little_endian 1.0']
  count = {l.split()[1]: int(l.split()[2]) for l in lines if l.startswith('element')}
  props = [l.split()[-1] for l in lines if l.startswith('property') and 'list' not in l]
  return count, props, body


def test_ply_files_hold_what_was_fused(tmp_path, fused):
  export.write_ply_mesh(str(tmp_path / 'm.ply'), fused)
  count, props, body = _parse_ply((tmp_path / 'm.ply').read_bytes())
  assert count == {'vertex': len(fused.positions), 'face': len(fused.faces)}
  assert props == ['x', 'y', 'z', 'nx', 'ny', 'nz', 'red', 'green', 'blue']
  vertex = np.frombuffer(body[:27 * count['vertex']], dtype=[
      ('p', '<f4', 3), ('n', '<f4', 3), ('c', 'u1', 3)])
  np.testing.assert_array_equal(vertex['p'], fused.positions)
  np.testing.assert_array_equal(vertex['c'], fused.colors)
  faces = np.frombuffer(body[27 * count['vertex']:], dtype=[('k', 'u1'), ('i', '<i4', 3)])
  assert np.all(faces['k'] == 3)
  np.testing.assert_array_equal(faces['i'], fused.faces)
  export.write_ply_points(str(tmp_path / 'p.ply'), fused)
  count, _, _ = _parse_ply((tmp_path / 'p.ply').read_bytes())
  assert count == {'vertex': int(fused.points.sum())}


def test_glb_is_valid_binary_gltf(tmp_path, fused):
  data = export.write_glb(str(tmp_path / 'm.glb'), fused) and (tmp_path / 'm.glb').read_bytes()
  magic, version, length = struct.unpack('<III', data[:12])
  assert (magic, version, length) == (0x46546C67, 2, len(data))
  json_len, json_type = struct.unpack('<II', data[12:20])
  assert json_type == 0x4E4F534A and json_len % 4 == 0
  gltf = json.loads(data[20:20 + json_len])
  bin_len, bin_type = struct.unpack('<II', data[20 + json_len:28 + json_len])
  assert bin_type == 0x004E4942 and bin_len == gltf['buffers'][0]['byteLength']
  blob = data[28 + json_len:]
  acc = gltf['accessors']
  prim = gltf['meshes'][0]['primitives'][0]
  pos_acc = acc[prim['attributes']['POSITION']]
  view = gltf['bufferViews'][pos_acc['bufferView']]
  assert view['byteOffset'] % 4 == 0
  pos = np.frombuffer(blob, '<f4', pos_acc['count'] * 3, view['byteOffset']).reshape(-1, 3)
  np.testing.assert_array_equal(pos, fused.positions)
  np.testing.assert_allclose(pos_acc['min'], fused.positions.min(0))
  idx_acc = acc[prim['indices']]
  idx_view = gltf['bufferViews'][idx_acc['bufferView']]
  idx = np.frombuffer(blob, '<u4', idx_acc['count'], idx_view['byteOffset'])
  np.testing.assert_array_equal(idx.reshape(-1, 3), fused.faces)
  assert acc[prim['attributes']['COLOR_0']]['normalized'] and prim['mode'] == 4


def test_videos(tmp_path):
  frames = np.zeros((5, 16, 16, 3), np.uint8)
  frames[:, :, :, 0] = np.arange(5)[:, None, None] * 50
  export.write_gif(str(tmp_path / 'v.gif'), frames, fps=10)
  gif = Image.open(tmp_path / 'v.gif')
  assert gif.n_frames == 5 and gif.size == (16, 16)
  if export.ffmpeg_exe() is None:
    pytest.skip('no ffmpeg (pip install imageio-ffmpeg)')
  export.write_mp4(str(tmp_path / 'v.mp4'), frames, fps=10)
  assert (tmp_path / 'v.mp4').read_bytes()[4:8] == b'ftyp'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['v.gif', 'v.mp4']


def test_depth_video_frames_use_the_authors_encoding():
  out = export.depth_frames(np.array([[[[0.5]], [[100.0]]]], np.float32).reshape(2, 1, 1, 1))
  assert out.shape == (2, 1, 1, 3) and out[0].sum() > out[1].sum()


def test_without_an_ffmpeg_mp4_is_left_out_with_one_note_or_refused_alone(monkeypatch):
  from ivid_jax.rendering import scene_videos  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(export, 'ffmpeg_exe', lambda: None)
  formats, note = scene_videos.video_formats(['mp4', 'gif'])
  assert formats == ['gif'] and 'MP4 videos skipped' in note and 'ivid-jax[video]' in note
  assert scene_videos.video_formats(['gif']) == (['gif'], None)
  with pytest.raises(RuntimeError, match='--video=mp4 needs an ffmpeg'):
    scene_videos.video_formats(['mp4'])
  monkeypatch.setattr(export, 'ffmpeg_exe', lambda: '/usr/bin/ffmpeg')
  assert scene_videos.video_formats(['mp4', 'gif']) == (['mp4', 'gif'], None)
