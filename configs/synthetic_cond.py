r"""G_c on synthetic_rgbd at 32 px, fine-tuned from the synthetic G_u as the authors do.

  ivid-jax train --config=configs/synthetic_cond.py --workdir=runs/synthetic_cond \
      --config.init_from=runs/synthetic_uncond
  ivid-jax export --workdir=runs/synthetic_cond --out=synthetic_cond.msgpack

Without init_from it trains from scratch (the authors' PyTorch init).

The authors' RGB erosion of the training conditions is in pixels of 128 px images
(boxes up to 9 px), and their discontinuity tolerance (0.02) compares neighbouring
pixels, which on a slanted ground plane differ four times as much at 32 px: both
are scaled to 32 px here (boxes up to 3 px, tolerance 0.08), as the sampler's are
(`chain.for_resolution`). With theirs, 33% of a 32 px condition's depth and 18%
of its colour reached the network; scaled, 56% and 49% (mean masks of 64
training pairs).
"""

import ml_collections

from ivid_jax.configs import imagenet128_cond
from ivid_jax.configs import synthetic_uncond


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = synthetic_uncond.get_config(arg)
  cond = imagenet128_cond.get_config()
  config.kind = 'cond'
  config.model.in_channels = 10
  for key in ('sampler', 'steps', 'eta', 'replace_rgb', 'replace_depth', 'constrain_depth',
              'image_dropout'):
    config.diffusion[key] = cond.diffusion[key]
  config.warp = cond.warp
  config.warp.erode_max_steps = 1  # box sides {1, 3}: the authors' {1, ..., 9} at 128 px
  config.warp.atol = config.warp.rtol = 0.02 * 128 / 32
  config.preview.num = 8
  return config
