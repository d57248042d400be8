"""A tiny G_c on random smooth 16 px scenes (warp + inpainting input): a run takes seconds.

  ivid-jax train --config=configs/tiny_cond.py --workdir=/tmp/tiny_cond
"""

import ml_collections

from ivid_jax.configs import imagenet128_cond
from ivid_jax.configs import tiny_uncond


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = tiny_uncond.get_config(arg)
  cond = imagenet128_cond.get_config()
  config.kind = 'cond'
  config.model.in_channels = 10
  config.diffusion.image_dropout = 0.0
  config.warp = cond.warp
  config.warp.ssaa = 1  # the smallest warp: seconds, not minutes, on a CPU
  return config
