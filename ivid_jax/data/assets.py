"""Files bundled with the package (the top-level data/ folder, installed as `ivid_jax.bundled_data`)."""

from __future__ import annotations

import importlib.resources
import os

import numpy as np


def path(name: str) -> str:
  """Absolute path of a bundled file, or `name` itself if it is an existing path."""
  if os.path.exists(name):
    return os.path.abspath(name)
  bundled = importlib.resources.files('ivid_jax.bundled_data').joinpath(name)
  if not bundled.is_file():
    raise FileNotFoundError(f'{name}: neither an existing file nor a file bundled in data/')
  return str(bundled)


def load_rgbd_npz(name: str) -> np.ndarray:
  """Loads an .npz of RGBD images: `color` uint8 [N, H, W, 3], `zbuffer` float [N, H, W].

  Returns:
    float32 [N, H, W, 4]: colour in [0, 1], z-buffer depth in [0, 1].

  Raises:
    ValueError naming the file when keys, shapes, dtypes or ranges are wrong.
  """
  file = path(name)
  try:
    data = np.load(file)
  except Exception as e:  # np.load raises several types for corrupt files.
    raise ValueError(f'{file}: not a readable .npz file ({e})') from e
  missing = {'color', 'zbuffer'} - set(data.files)
  if missing:
    raise ValueError(f'{file}: missing arrays {sorted(missing)} (has {data.files})')
  color, z = data['color'], data['zbuffer']
  if color.ndim != 4 or color.shape[-1] != 3 or color.dtype != np.uint8:
    raise ValueError(f'{file}: color must be uint8 [N, H, W, 3], got {color.dtype} {color.shape}')
  if z.shape != color.shape[:3]:
    raise ValueError(f'{file}: zbuffer must be [N, H, W] = {color.shape[:3]}, got {z.shape}')
  if color.shape[1] != color.shape[2]:
    raise ValueError(f'{file}: images must be square, got {color.shape[1]}x{color.shape[2]}')
  z = z.astype(np.float32)
  if not np.all(np.isfinite(z)) or z.min() < 0.0 or z.max() > 1.0:
    raise ValueError(f'{file}: zbuffer must be finite and in [0, 1], got [{z.min()}, {z.max()}]')
  return np.concatenate([color.astype(np.float32) / 255.0, z[..., None]], axis=-1)
