"""Image-to-3D: a photo (and its depth) as a scene's first view.

The chain's view 0 is then given instead of sampled. The photo is
preprocessed exactly as training data (`data.preprocess`, reference 1.2-1.4):
its disparity (from an .npz in the authors' format, or estimated by an
`estimate-depth` backend) is scaled, encoded as the data's z-buffer channel,
and resized and centre-cropped with the image. The chain then lifts that
channel with the sampler's near/far, as it does a generated view.
"""

from __future__ import annotations

import numpy as np

from ivid_jax.data import estimate_depth
from ivid_jax.data import preprocess


def first_view(image_path: str, size: int, *, depth_path: str | None = None,
               depth_model: str = estimate_depth.DEFAULT_MODEL, seed: int = 0) -> np.ndarray:
  """A photo as view 0: float32 [size, size, 4], RGB in [0, 1] and the data's z-buffer depth.

  Args:
    image_path: any image PIL reads.
    size: the networks' resolution.
    depth_path: optional .npz of the photo's relative inverse depth in the
      authors' format (`arr_0`, what `ivid-jax estimate-depth` writes), same aspect ratio.
    depth_model: the `estimate-depth` backend used when no depth is given
      (a transformers model id or folder, or 'tiny-random' for smoke runs).
    seed: seed of the tiny-random backend.

  Raises:
    data.errors.BadExampleError naming the file for an unreadable image or depth map.
  """
  image = preprocess.read_image(image_path)
  if depth_path is not None:
    raw = preprocess.read_depth_npz(depth_path)
    preprocess.check_depth_matches(raw.shape, image.shape, depth_path)
  else:
    estimator = estimate_depth.make_estimator(depth_model, seed=seed, batch_size=1)
    rgb = image if image.ndim == 3 else image[..., None]
    rgb = np.repeat(rgb, 3, -1) if rgb.shape[-1] == 1 else rgb[..., :3]  # as the loader does
    disparity = estimator.predict(np.ascontiguousarray(rgb, np.uint8)[None])[0]
    raw = estimate_depth.to_stored(disparity, estimator.depth_scale, image_path).astype(np.float32)
  example = preprocess.rgbd_example(image, raw, size)
  return np.concatenate([example['rgb'].astype(np.float32) / 255.0, example['depth']], -1)
