"""G_c: the conditional (inpainting) RGBD model on ImageNet 128 (reference 2.7, 3.3).

  ivid-jax convert-checkpoint imagenet128_cond.pt ckpt/cond --config=configs/imagenet128_cond.py
"""

import ml_collections

from ivid_jax.configs import imagenet128_uncond


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = imagenet128_uncond.get_config(arg)
  # [x_t (4), mask_rgb, y_rgb, y_z, mask]: the warped condition is concatenated.
  config.model.in_channels = 10
  config.diffusion.sampler = 'ddim'
  config.diffusion.steps = 50 if arg != 'runlocal' else 10
  config.diffusion.eta = 0.0
  # x_0 edits inside DDIM (reference 6.5); 0 switches one off.
  config.diffusion.replace_rgb = 0.1
  config.diffusion.replace_depth = 0.2
  config.diffusion.constrain_depth = 0.5
  return config
