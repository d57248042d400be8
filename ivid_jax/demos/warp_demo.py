"""The warp demo: what the conditional model's training conditions look like.

For each bundled RGBD image it draws random training cameras V1 (reference
2.2), warps the image to V1 and back, and writes a picture (input, depth, the
conditions and their masks) and an animation of the condition along a swing
trajectory.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from PIL import Image
from tqdm import tqdm

from ivid_jax.data import assets
from ivid_jax.geometry import cameras
from ivid_jax.geometry import warp

_HOLE = np.array([255, 0, 255], np.uint8)  # magenta marks holes in the pictures


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _show_condition(color: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """[H, W, 3] condition colour with holes painted magenta, uint8."""
  out = _to_uint8(color)
  return np.where(mask > 0.5, out, _HOLE)


def _show_depth(z: np.ndarray) -> np.ndarray:
  """[H, W] z-buffer as a grey image, near bright (contrast-stretched)."""
  lo, hi = np.percentile(z, 1), np.percentile(z, 99)
  g = 1.0 - (z - lo) / max(hi - lo, 1e-6)
  return np.repeat(_to_uint8(g)[..., None], 3, -1)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
  """Runs the demo; returns {'grid': path to PNG, 'swing': path to GIF or ''}."""
  os.makedirs(workdir, exist_ok=True)
  rgbd = assets.load_rgbd_npz(config.images)
  num_images, n = rgbd.shape[0], rgbd.shape[1]
  logging.info('Warping %d images of %dx%d (ssaa %d) on %s', num_images, n, n,
               config.warp.ssaa, jax.default_backend())
  key = jax.random.key(config.seed)
  warp_kwargs = dict(padding=config.warp.padding, ssaa=config.warp.ssaa,
                     atol=config.warp.atol, rtol=config.warp.rtol)

  cams = cameras.random_training_camera(key, (num_images, config.num_cameras),
                                        **config.camera.to_dict())
  rows = []
  start = time.perf_counter()
  for i in tqdm(range(num_images), desc='training-pair warps', unit='image'):
    batch = jnp.broadcast_to(jnp.asarray(rgbd[i]), (config.num_cameras,) + rgbd.shape[1:])
    out = jax.device_get(warp.forward_backward_warp(batch, cams[i], **warp_kwargs))
    tiles = [_to_uint8(rgbd[i, ..., :3]), _show_depth(rgbd[i, ..., 3])]
    tiles += [_show_condition(c, m) for c, m in zip(out.color, out.mask)]
    rows.append(np.concatenate(tiles, axis=1))
  grid_path = os.path.join(workdir, 'warp_grid.png')
  Image.fromarray(np.concatenate(rows, axis=0)).save(grid_path)
  logging.info('Wrote %s (%.1f s)', grid_path, time.perf_counter() - start)

  swing_path = ''
  if config.num_frames > 0:
    t = np.linspace(0.0, 2.0 * np.pi, config.num_frames, endpoint=False)
    path_cams = cameras.orbit_camera(config.swing_yaw * np.cos(t), config.swing_pitch * np.sin(t))
    frames = []
    for i in tqdm(range(num_images), desc='swing warps', unit='image'):
      batch = jnp.broadcast_to(jnp.asarray(rgbd[i]), (config.num_frames,) + rgbd.shape[1:])
      out = jax.device_get(warp.forward_backward_warp(batch, path_cams, **warp_kwargs))
      frames.append([_show_condition(c, m) for c, m in zip(out.color, out.mask)])
    images = [Image.fromarray(np.concatenate(f, axis=1)) for f in zip(*frames)]
    swing_path = os.path.join(workdir, 'warp_swing.gif')
    images[0].save(swing_path, save_all=True, append_images=images[1:], duration=80, loop=0)
    logging.info('Wrote %s', swing_path)
  return {'grid': grid_path, 'swing': swing_path}
