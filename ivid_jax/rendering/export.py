"""Export of generated scenes: a fused coloured mesh (PLY, GLB), a point cloud (PLY), videos.

Fusion for export: each view becomes its grid mesh (no padding) without the
faces that span a depth discontinuity (the rubber sheets, reference 2.3), and
every pixel is kept by the one view that saw its surface most head-on, by the
authors' aggregation weight exp(-20 angle) (reference 6.4): a pixel of view i
is dropped when another view j sees the same surface (its depth at the
pixel's projection agrees within `rtol`) with a larger weight. A face is kept
when any of its vertices is, so the pieces of different views overlap by at
most one pixel instead of leaving cracks. The result opens in MeshLab and
Blender.

Files are written by hand (binary little-endian PLY, glTF 2.0 binary) with
numpy: no mesh library is needed. Videos: GIF with PIL; MP4 with an ffmpeg
binary, from `imageio-ffmpeg` (pip install 'ivid-jax[video]') or the PATH.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from PIL import Image

from ivid_jax import atomic
from ivid_jax import images
from ivid_jax.geometry import cameras
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import mesh as mesh_lib
from ivid_jax.geometry import render
from ivid_jax.sampling import scene_io


class FusedMesh(NamedTuple):
  """A triangle mesh fused from the views of a scene (numpy).

  Attributes:
    positions: float32 [P, 3] world coordinates (OpenGL axes: y up).
    normals: float32 [P, 3] unit normals, towards the camera that saw the vertex.
    colors: uint8 [P, 3] sRGB.
    faces: int32 [F, 3] counter-clockwise as seen from outside (the cameras' side).
    points: bool [P]: the vertices kept as the point cloud (each surface point once).
  """
  positions: np.ndarray
  normals: np.ndarray
  colors: np.ndarray
  faces: np.ndarray
  points: np.ndarray


@jax.jit
def _keep(points, normals, depth, modelviews, fov, rtol):
  """bool [V, N*N]: pixel kept by its own view (see the module docstring)."""
  num_views, n = depth.shape[0], depth.shape[1]
  centers = cameras.camera_center(modelviews)  # [V, 3]
  proj = cameras.perspective(fov, 0.01, 100.0)

  def weight(p, nrm, center):
    no_flags = jnp.zeros(p.shape[:-1] + (3,), jnp.float32)
    return render.aggregation_weight(nrm, p, center, no_flags, jnp.ones(p.shape[:-1], bool))

  own = jax.vmap(weight)(points, normals, centers[:, None, :])  # [V, P]

  def best_other(p, w_own, i):
    """Does a view j != i see p (depth within rtol) with a larger weight (ties: lower j)?"""

    def seen_by(j):
      cam = jnp.einsum('ij,pj->pi', modelviews[j][:3, :3], p) + modelviews[j][:3, 3]
      clip = jnp.einsum('ij,pj->pi', proj[:, :3], cam) + proj[:, 3]
      w = jnp.maximum(clip[:, 3], 1e-6)
      col = jnp.floor((clip[:, 0] / w * 0.5 + 0.5) * n).astype(jnp.int32)
      row = jnp.floor((0.5 - clip[:, 1] / w * 0.5) * n).astype(jnp.int32)
      inside = (clip[:, 3] > 0) & (col >= 0) & (col < n) & (row >= 0) & (row < n)
      flat = jnp.clip(row, 0, n - 1) * n + jnp.clip(col, 0, n - 1)
      d_j = depth[j].reshape(-1)[flat]
      same = inside & (jnp.abs(d_j - clip[:, 3]) <= rtol * d_j)
      w_j = own[j][flat]
      better = (w_j > w_own) | ((w_j == w_own) & (j < i))
      return same & better & (j != i)

    return jnp.any(jax.vmap(seen_by)(jnp.arange(num_views)), axis=0)

  dropped = jax.vmap(best_other)(points, own, jnp.arange(num_views))
  return ~dropped


def fuse(scene: scene_io.Scene, *, atol: float = 0.03, rtol: float = 0.03) -> FusedMesh:
  """Fuses a scene's views into one mesh and point cloud (module docstring)."""
  depth = scene.linear_depth()
  v, n = depth.shape[0], depth.shape[1]
  meshes = mesh_lib.batched_depth_to_mesh(jnp.asarray(depth), jnp.asarray(scene.modelviews),
                                          fov=scene.fov, normals=True)
  keep = np.asarray(_keep(meshes.positions, meshes.normals, jnp.asarray(depth),
                          jnp.asarray(scene.modelviews), scene.fov, rtol))
  faces = np.asarray(meshes.faces)
  flat_depth = depth.reshape(v, -1)
  sheet = np.stack([np.asarray(mesh_lib.discontinuous_faces(jnp.asarray(faces[i]),
                                                           jnp.asarray(flat_depth[i]), atol, rtol))
                    for i in range(v)])
  keep_face = np.any(np.take_along_axis(keep, faces.reshape(v, -1), 1).reshape(faces.shape),
                     -1) & ~sheet
  offsets = (np.arange(v) * n * n)[:, None, None]
  all_faces = (faces + offsets)[keep_face]
  used = np.zeros(v * n * n, bool)
  used[all_faces.reshape(-1)] = True
  used |= keep.reshape(-1)
  index = np.cumsum(used) - 1
  colors = images.to_uint8(scene.views[..., :3], 'truncate').reshape(-1, 3)
  return FusedMesh(
      positions=np.asarray(meshes.positions).reshape(-1, 3)[used].astype(np.float32),
      normals=np.asarray(meshes.normals).reshape(-1, 3)[used].astype(np.float32),
      colors=colors[used], faces=index[all_faces].astype(np.int32),
      points=keep.reshape(-1)[used])


def _write(path: str, data: bytes) -> str:
  return atomic.write_atomic(path, lambda f: f.write(data))


def ply_bytes(positions: np.ndarray, colors: np.ndarray, normals: np.ndarray | None = None,
              faces: np.ndarray | None = None) -> bytes:
  """A binary little-endian PLY: vertices (x y z [nx ny nz] red green blue) and optional faces."""
  p = len(positions)
  fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
  if normals is not None:
    fields += [('nx', '<f4'), ('ny', '<f4'), ('nz', '<f4')]
  fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
  vertex = np.zeros(p, dtype=fields)
  vertex['x'], vertex['y'], vertex['z'] = positions.T
  if normals is not None:
    vertex['nx'], vertex['ny'], vertex['nz'] = normals.T
  vertex['red'], vertex['green'], vertex['blue'] = colors.T
  props = {'<f4': 'float', 'u1': 'uchar'}
  header = ['ply', 'format binary_little_endian 1.0', 'comment ivid-jax fused scene',
            f'element vertex {p}'] + [f'property {props[t]} {name}' for name, t in fields]
  body = vertex.tobytes()
  if faces is not None:
    header += [f'element face {len(faces)}', 'property list uchar int vertex_indices']
    face = np.zeros(len(faces), dtype=[('count', 'u1'), ('index', '<i4', (3,))])
    face['count'] = 3
    face['index'] = faces
    body += face.tobytes()
  return ('\n'.join(header + ['end_header']) + '\n').encode('ascii') + body


def write_ply_mesh(path: str, mesh: FusedMesh) -> str:
  """The fused mesh as a PLY with vertex colours and normals."""
  return _write(path, ply_bytes(mesh.positions, mesh.colors, mesh.normals, mesh.faces))


def write_ply_points(path: str, mesh: FusedMesh) -> str:
  """The fused point cloud (each surface point once) as a PLY with colours and normals."""
  k = mesh.points
  return _write(path, ply_bytes(mesh.positions[k], mesh.colors[k], mesh.normals[k]))


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
  c = c.astype(np.float64) / 255.0
  return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def glb_bytes(mesh: FusedMesh) -> bytes:
  """The fused mesh as binary glTF 2.0 (POSITION, NORMAL, COLOR_0, indices).

  glTF vertex colours are linear: the sRGB image colours are converted, so the
  mesh looks like the images in viewers that follow the spec (Blender).
  """
  pos = np.ascontiguousarray(mesh.positions, '<f4')
  nrm = np.ascontiguousarray(mesh.normals, '<f4')
  rgba = np.concatenate([np.round(_srgb_to_linear(mesh.colors) * 255.0),
                         np.full((len(pos), 1), 255.0)], 1).astype(np.uint8)
  idx = np.ascontiguousarray(mesh.faces.reshape(-1), '<u4')
  blobs = [pos.tobytes(), nrm.tobytes(), rgba.tobytes(), idx.tobytes()]
  views, offset = [], 0
  for k, blob in enumerate(blobs):
    views.append({'buffer': 0, 'byteOffset': offset, 'byteLength': len(blob),
                  'target': 34963 if k == 3 else 34962})
    offset += (len(blob) + 3) // 4 * 4
  binary = b''.join(blob + b'\x00' * ((-len(blob)) % 4) for blob in blobs)
  gltf = {
      'asset': {'version': '2.0', 'generator': 'ivid-jax'},
      'scene': 0, 'scenes': [{'nodes': [0]}], 'nodes': [{'mesh': 0}],
      'meshes': [{'primitives': [{'attributes': {'POSITION': 0, 'NORMAL': 1, 'COLOR_0': 2},
                                  'indices': 3, 'mode': 4}]}],
      'buffers': [{'byteLength': len(binary)}],
      'bufferViews': views,
      'accessors': [
          {'bufferView': 0, 'componentType': 5126, 'count': len(pos), 'type': 'VEC3',
           'min': pos.min(0).tolist(), 'max': pos.max(0).tolist()},
          {'bufferView': 1, 'componentType': 5126, 'count': len(pos), 'type': 'VEC3'},
          {'bufferView': 2, 'componentType': 5121, 'normalized': True, 'count': len(pos),
           'type': 'VEC4'},
          {'bufferView': 3, 'componentType': 5125, 'count': len(idx), 'type': 'SCALAR'},
      ],
  }
  text = json.dumps(gltf, separators=(',', ':')).encode('utf-8')
  text += b' ' * ((-len(text)) % 4)
  chunks = struct.pack('<II', len(text), 0x4E4F534A) + text
  chunks += struct.pack('<II', len(binary), 0x004E4942) + binary
  return struct.pack('<III', 0x46546C67, 2, 12 + len(chunks)) + chunks


def write_glb(path: str, mesh: FusedMesh) -> str:
  return _write(path, glb_bytes(mesh))


def export_scene(scene: scene_io.Scene, stem: str, formats=('ply', 'glb', 'points')) -> list[str]:
  """Writes `stem`.ply (mesh), `stem`.glb and `stem`_points.ply; returns the paths."""
  mesh = fuse(scene)
  out = []
  if 'ply' in formats:
    out.append(write_ply_mesh(stem + '.ply', mesh))
  if 'glb' in formats:
    out.append(write_glb(stem + '.glb', mesh))
  if 'points' in formats:
    out.append(write_ply_points(stem + '_points.ply', mesh))
  return out


# ---------------------------------------------------------------------------------------------
# Videos.

def ffmpeg_exe() -> str | None:
  """An ffmpeg binary: imageio-ffmpeg's (pip install 'ivid-jax[video]'), else one on the PATH."""
  try:
    import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
    return imageio_ffmpeg.get_ffmpeg_exe()
  except (ImportError, RuntimeError):
    return shutil.which('ffmpeg')


def write_gif(path: str, frames: np.ndarray, fps: float = 30.0) -> str:
  """uint8 [F, H, W, 3] -> looping GIF (PIL)."""
  images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]

  def save(f):
    images[0].save(f, format='GIF', save_all=True, append_images=images[1:],
                   duration=int(round(1000.0 / fps)), loop=0)

  return atomic.write_atomic(path, save)


def write_mp4(path: str, frames: np.ndarray, fps: float = 30.0) -> str | None:
  """uint8 [F, H, W, 3] -> H.264 MP4 (yuv420p, plays everywhere); None without an ffmpeg."""
  exe = ffmpeg_exe()
  if exe is None:
    logging.warning("%s: no ffmpeg found, MP4 skipped (pip install 'ivid-jax[video]')", path)
    return None
  frames = np.ascontiguousarray(frames, np.uint8)
  _, h, w, _ = frames.shape
  with atomic.atomic_path(path, suffix='.mp4') as tmp:  # ffmpeg reads the format from '.mp4'
    cmd = [exe, '-y', '-loglevel', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{w}x{h}',
           '-r', str(fps), '-i', '-', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-crf', '18',
           '-movflags', '+faststart', tmp]
    proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True, check=False)
    if proc.returncode != 0:
      raise RuntimeError(f'{path}: ffmpeg failed: {proc.stderr.decode(errors="replace")[-500:]}')
  return path


def depth_frames(depth: np.ndarray) -> np.ndarray:
  """Linear depth frames [F, H, W, 1] -> inferno uint8 [F, H, W, 3], as render.py colours them.

  The authors project the frames' depth with render.py's defaults near 0.5 /
  far 100 (not the sampler's 0.6 / 5) and colour 1 - z.
  """
  z = np.asarray(depth_lib.project_depth(np.asarray(depth)[..., 0], depth_lib.TRAIN_NEAR,
                                         depth_lib.TRAIN_FAR))
  return images.to_uint8(images.colorize_depth(z), 'truncate')

