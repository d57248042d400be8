"""The warp demo: forward-backward warps of the bundled RGBD images.

Run (the default config of `ivid-jax`):
  ivid-jax warp-demo
  ivid-jax warp-demo --config.warp.ssaa=2 --config.num_frames=24 --workdir=/tmp/demo
"""

import ml_collections

from ivid_jax.geometry import cameras


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the demo config; `arg='runlocal'` shrinks it for a smoke run."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.images = 'demo_rgbd.npz'  # bundled in data/, or a path to an .npz with color/zbuffer
  # Cameras: the training distribution of V1 (reference 2.2) for the grid,
  # and a swing trajectory for the animation.
  config.num_cameras = 4  # random training cameras per image in the picture
  config.num_frames = 16  # frames of the swing animation (0: no animation)
  config.swing_yaw = 0.3  # radians
  config.swing_pitch = 0.15  # radians
  config.warp = ml_collections.ConfigDict()
  config.warp.ssaa = 3  # supersampling of both renders
  config.warp.padding = 128  # mesh padding in pixels (training: the image size)
  config.warp.atol = 0.02  # discontinuity tolerances (training: 0.02)
  config.warp.rtol = 0.02
  # Random V1 (reference 2.2): yaw_std, pitch_std (radians), radius_std (radius = 1 + N(0, 1)
  # std), target_std (look-at jitter); the training distribution unless overridden.
  config.camera = ml_collections.ConfigDict(cameras.TRAINING_CAMERA_STD)
  if arg == 'runlocal':
    config.num_cameras = 2
    config.num_frames = 4
    config.warp.ssaa = 2
  return config
