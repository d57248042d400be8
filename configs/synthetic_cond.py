r"""G_c on synthetic_rgbd at 32 px, fine-tuned from the synthetic G_u as the authors do.

  ivid-jax train --config=configs/synthetic_cond.py --workdir=runs/synthetic_cond \
      --config.init_from=runs/synthetic_uncond
  ivid-jax export --workdir=runs/synthetic_cond --out=synthetic_cond.msgpack

Without init_from it trains from scratch (the authors' PyTorch init).
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
  config.preview.num = 8
  return config
