"""Pictures for people: 8-bit conversion, the depth colour map and image grids (numpy only).

Every PNG, video frame and grid the package writes goes through these, so the
rounding rule, the colour map and the grid layout are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

GRID_PADDING = 2  # torchvision.utils.save_image's default, which the authors' grids use

# Inferno as a degree-6 polynomial per channel (Matt Zucker's fit, CC0): within a few
# 1/255 of matplotlib's table, which is what the authors' OpenCV INFERNO map reproduces.
_INFERNO = np.array([
    [0.0002189403691192265, 0.001651004631001012, -0.01948089843709184],
    [0.1065134194856116, 0.5639564367884091, 3.932712388889277],
    [11.60249308247187, -3.972853965665698, -15.9423941062914],
    [-41.70399613139459, 17.43639888205313, 44.35414519872813],
    [77.162935699427, -33.40235894210092, -81.80730925738993],
    [-71.31942824499214, 32.62606426397723, 73.20951985803202],
    [25.13112622477341, -12.24266895238567, -23.07032500287172]], np.float64)


def to_uint8(x: np.ndarray, rounding: Literal['truncate', 'nearest']) -> np.ndarray:
  """Floats in [0, 1] (clipped) -> uint8; uint8 input is returned as it is.

  Args:
    x: float array [...] in [0, 1]; values outside are clipped first.
    rounding: 'truncate': floor(clip(x) * 255), the authors' `(x * 255).astype(uint8)`,
      used for everything a scene file or the sampler's pictures store, so they match
      the authors' byte for byte. 'nearest': round(clip(x) * 255), halves to even
      (`np.round`), for pictures that only people look at (training previews, datasets
      built from float images), where it halves the error.
  """
  x = np.asarray(x)
  if x.dtype == np.uint8:
    return x
  scaled = np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255.0
  if rounding == 'truncate':
    return scaled.astype(np.uint8)
  if rounding == 'nearest':
    return np.round(scaled).astype(np.uint8)
  raise ValueError(f"rounding must be 'truncate' or 'nearest', got {rounding!r}")


def inferno(t: np.ndarray) -> np.ndarray:
  """Inferno colours of t in [0, 1] (clipped): float32 [..., 3] in [0, 1]."""
  t = np.clip(np.asarray(t, np.float64), 0.0, 1.0)[..., None]
  out = np.zeros(t.shape[:-1] + (3,), np.float64)
  for c in _INFERNO[::-1]:
    out = out * t + c
  return np.clip(out, 0.0, 1.0).astype(np.float32)


def colorize_depth(z: np.ndarray, normalize: bool = False) -> np.ndarray:
  """z-buffer depth [..., H, W] (no channel axis) -> inferno RGB [..., H, W, 3], near bright.

  Args:
    z: depth that grows with distance: in [0, 1] (the sampler's z-buffer), or any range
      with normalize=True.
    normalize: stretch each image's (last two axes') min..max to 0..1 first, so relative
      depth shows whatever the range (training previews, whose depth is in [-1, 1]).
  """
  z = np.asarray(z, np.float32)
  if normalize:
    lo = z.min(axis=(-2, -1), keepdims=True)
    hi = z.max(axis=(-2, -1), keepdims=True)
    z = (z - lo) / np.maximum(hi - lo, 1e-6)
  return inferno(1.0 - z)


def grid(images: np.ndarray, rows: Sequence[Sequence[int]], *, fill: float = 0.0,
         padding: int = GRID_PADDING, border: bool = True,
         background: float = 0.0) -> np.ndarray:
  """Tiles images as rows of indices into one picture, float32 [H', W', C].

  Args:
    images: [K, H, W, C] equally sized tiles.
    rows: rows of indices into images; -1 draws a blank tile of `fill`. Rows may differ in
      length (the rest of a short row is background).
    padding: pixels between tiles.
    border: also `padding` pixels around the outside (torchvision's save_image, the
      authors' grids); False: only between tiles.
    background: the value of the lines between tiles (0: black, 1: white for floats).
  """
  images = np.asarray(images, np.float32)
  h, w, c = images.shape[1:4]
  p = padding
  edge = p if border else 0
  num_rows, num_cols = len(rows), max(len(r) for r in rows)
  out = np.full((2 * edge + num_rows * (h + p) - p, 2 * edge + num_cols * (w + p) - p, c),
                background, np.float32)
  for i, row in enumerate(rows):
    for j, k in enumerate(row):
      top, left = edge + i * (h + p), edge + j * (w + p)
      out[top:top + h, left:left + w] = fill if k < 0 else images[k]
  return out
