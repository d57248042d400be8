"""The authors' RGBD preprocessing (reference 1.2, 1.4, 10.1), on the host in numpy.

From a stored MiDaS disparity map to the depth channel, and from an image of any
size to a square example: the shorter side resized to `size` (Lanczos for colour,
nearest for depth, each exactly as torchvision's `Resize` on a PIL image), then a
centre crop. Examples are stored as `rgb` uint8 [S, S, 3] and `depth` float32
[S, S, 1] (the depth channel in [0, 1]); `to_model_input` maps both to the
network's x0 [S, S, 4] in [-1, 1].

Readers raise `errors.BadExampleError` naming the file for anything unusable.
"""

from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np
from PIL import Image

from ivid_jax.data.errors import BadExampleError
from ivid_jax.geometry import depth as depth_lib

MIDAS_SCALE = 6250.0      # stored disparities are divided by this (reference 1.2)
DISPARITY_FLOOR = 1e-3    # no point farther than D = 1000
DEPTH_MODES = ('none', 'to_depth', 'disparity_minmax', 'depth_minmax', 'z_buffer')
ASPECT_RTOL = 0.02        # a depth map must have its image's aspect ratio within this
# Images the readers take (PIL decodes all of them), compared lower-case: the folder builder
# and estimate-depth list files with this one tuple, so every depth written is used.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.gif', '.ppm')
# ImageNet train file names start with their synset: n01440764_10026.JPEG.
_SYNSET_PREFIX = re.compile(r'^(n\d{8})_')


def is_image_file(name: str) -> bool:
  """Whether a file name has one of IMAGE_EXTENSIONS (any case)."""
  return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def synset_of(name: str) -> str | None:
  """The synset an ImageNet train file name starts with (`n01440764_10026` -> n01440764), or None."""
  match = _SYNSET_PREFIX.match(os.path.basename(name))
  return match.group(1) if match else None


def scale_disparity(raw: np.ndarray, near: float = depth_lib.TRAIN_NEAR) -> np.ndarray:
  """Stored disparity [H, W] -> disparity 1/D: /6250, nearest point at most at `near`, floored.

  The maximum is taken over the full, uncropped map (reference 10.1).
  """
  disparity = np.asarray(raw, np.float32) / MIDAS_SCALE
  peak = float(disparity.max())
  if peak > 1.0 / near:
    disparity = disparity / (peak * near)
  return np.maximum(disparity, DISPARITY_FLOOR)


def depth_channel(disparity: np.ndarray, mode: str = 'z_buffer',
                  near: float = depth_lib.TRAIN_NEAR, far: float = depth_lib.TRAIN_FAR
                  ) -> np.ndarray:
  """Disparity [H, W] -> the stored depth channel [H, W] float32 (`prepocess_depth` modes).

  `z_buffer` (every config) gives OpenGL window depth in [0, 1], 0 at D = near.
  """
  d = np.asarray(disparity, np.float32)
  if mode == 'none':
    return d
  if mode == 'to_depth':
    return 1.0 / d
  if mode in ('disparity_minmax', 'depth_minmax'):
    v = d if mode == 'disparity_minmax' else 1.0 / d
    lo, hi = float(v.min()), float(v.max())
    return ((v - lo) / max(hi - lo, 1e-12)).astype(np.float32)
  if mode == 'z_buffer':
    return np.asarray(depth_lib.disparity_to_zbuffer(d, near, far), np.float32)
  raise ValueError(f'unknown depth preprocessing mode {mode!r}; expected one of {DEPTH_MODES}')


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
  """torchvision Resize(size): the shorter side becomes `size`, the longer is truncated."""
  if height <= width:
    return size, int(size * width / height)
  return int(size * height / width), size


def center_crop(x: np.ndarray, size: int) -> np.ndarray:
  """torchvision CenterCrop(size) of [H, W, ...] (offsets rounded half to even)."""
  h, w = x.shape[:2]
  top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
  return x[top:top + size, left:left + size]


def resize_crop_rgb(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W] / [H, W, C] -> uint8 [size, size, 3]: Lanczos on the shorter side, centre crop.

  One channel is repeated to three; a fourth (alpha) channel is dropped, as the
  authors' loader does.
  """
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
  h, w = resized_shape(image.shape[0], image.shape[1], size)
  resized = Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS)
  return center_crop(np.asarray(resized), size)


def resize_crop_depth(depth: np.ndarray, size: int) -> np.ndarray:
  """float [H, W] -> float32 [size, size]: nearest on the shorter side (PIL mode 'F'), centre crop."""
  depth = np.asarray(depth, np.float32)
  h, w = resized_shape(depth.shape[0], depth.shape[1], size)
  resized = Image.fromarray(depth, mode='F').resize((w, h), Image.Resampling.NEAREST)
  return center_crop(np.asarray(resized, np.float32), size)


def rgbd_example(image: np.ndarray, raw_disparity: np.ndarray, size: int,
                 mode: str = 'z_buffer') -> dict[str, np.ndarray]:
  """An image and its stored disparity -> {'rgb' uint8 [S, S, 3], 'depth' float32 [S, S, 1]}."""
  z = depth_channel(scale_disparity(raw_disparity), mode)
  return {'rgb': resize_crop_rgb(image, size), 'depth': resize_crop_depth(z, size)[..., None]}


def to_model_input(rgb, depth):
  """rgb uint8 [..., S, S, 3], depth [..., S, S, 1] in [0, 1] -> x0 float32 [..., S, S, 4] in [-1, 1].

  Works on numpy arrays (the loader runs it on the host) and on jax arrays alike.
  """
  xp = np if isinstance(rgb, np.ndarray) and isinstance(depth, np.ndarray) else _jnp()
  x = xp.concatenate([xp.asarray(rgb).astype(xp.float32) / 255.0,
                      xp.asarray(depth).astype(xp.float32)], axis=-1)
  return x * 2.0 - 1.0


def _jnp():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp


# ---------------------------------------------------------------------------------------------
# Readers that name the file and the problem.

def decode_image(data: bytes, path: str | os.PathLike) -> np.ndarray:
  """Encoded image bytes -> uint8 [H, W, C]; BadExampleError for corrupt or truncated data."""
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()  # decodes fully: truncated files fail here, not later
      if img.mode not in ('L', 'RGB', 'RGBA'):
        img = img.convert('RGB')
      array = np.asarray(img)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise BadExampleError(path, f'cannot decode image ({type(e).__name__}: {e})') from None
  if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
    raise BadExampleError(path, f'image has unusable shape {array.shape}')
  return array


def read_image(path: str | os.PathLike) -> np.ndarray:
  """Image file -> uint8 [H, W, C] (see decode_image)."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise BadExampleError(path, 'image file is missing') from None
  return decode_image(data, path)


def read_depth_npz(path: str | os.PathLike) -> np.ndarray:
  """The authors' depth file (one fp16 array `arr_0`) -> float32 [H, W].

  BadExampleError if it is missing, not a readable .npz, not 2-D, or holds NaN/inf.
  """
  if not os.path.exists(path):
    raise BadExampleError(path, 'depth file is missing')
  try:
    with np.load(path) as npz:
      keys = list(npz.keys())
      if not keys:
        raise BadExampleError(path, 'depth file holds no array')
      depth = npz['arr_0' if 'arr_0' in keys else keys[0]]
  except BadExampleError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
    raise BadExampleError(path, f'cannot read depth .npz ({type(e).__name__}: {e})') from None
  depth = np.squeeze(np.asarray(depth, np.float32))
  if depth.ndim != 2:
    raise BadExampleError(path, f'depth map must be 2-D, got shape {depth.shape}')
  check_finite_depth(depth, path)
  return depth


def check_finite_depth(depth: np.ndarray, path: str | os.PathLike) -> None:
  bad = ~np.isfinite(depth)
  if bad.any():
    raise BadExampleError(path, f'depth map has {int(bad.sum())} NaN/inf value(s)')


def check_depth_matches(depth_shape: tuple[int, ...], image_shape: tuple[int, ...],
                        path: str | os.PathLike) -> None:
  """The depth map must have its image's aspect ratio (it is resized independently)."""
  dh, dw = depth_shape[:2]
  ih, iw = image_shape[:2]
  if abs(dh * iw - dw * ih) > ASPECT_RTOL * dw * ih:
    raise BadExampleError(
        path, f'depth map is {dh}x{dw} but its image is {ih}x{iw} (aspect ratios differ)')
