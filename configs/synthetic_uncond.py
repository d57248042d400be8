"""G_u on synthetic_rgbd at 32 px: the network the demo ships, small enough to train on a CPU.

  ivid-jax train --config=configs/synthetic_uncond.py --workdir=runs/synthetic_uncond
  ivid-jax export --workdir=runs/synthetic_uncond --out=synthetic_uncond.msgpack

The dataset (synthetic_rgbd/r32_solid) is built on first use. The network is
small (32 channels) so that the demo samples a 3x9 scene on a CPU in seconds;
the EMA warms up and the learning rate is 2x the authors'. Previews clip x_0
(young networks overshoot at large t). The shipped G_u has 6,000 steps
(from step 2,000 at lr 5e-4) and draws ground planes, skies and flat-coloured
objects with stochastic DDIM (preview.eta = 1); deterministic DDIM speckles them.
The run resumes from its last checkpoint with a larger --config.total_steps.
"""

import ml_collections

from ivid_jax.configs import imagenet128_uncond


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = imagenet128_uncond.get_config()
  config.model.update(image_size=32, model_channels=32, channel_mult=(1, 2, 2),
                      attention_resolutions=(8,), num_groups=16, num_head_channels=32,
                      num_classes=5)  # synthetic.CLASS_NAMES
  config.input.dataset = 'synthetic_rgbd'
  config.input.tfds_config = 'r32_solid'  # shaded solid colours (r32: textured)
  config.input.batch_size = 32
  config.optim.lr = 2e-4
  config.ema.decays = (0.999,)
  config.ema.warmup = True
  config.total_steps = 40000
  config.log_every_steps = 50
  config.preview_every_steps = 800
  config.checkpoint_every_steps = 200
  config.preview.num = 16
  config.preview.steps = 50
  config.preview.guidance = 1.0
  # A network this briefly trained predicts x_0 far outside [-1, 1] at large t; unclipped,
  # DDIM then ends in saturated noise even when the network has learned the scenes.
  config.preview.clip_denoised = True
  # Deterministic DDIM draws speckled images from a young network even at 250 steps;
  # stochastic DDIM (eta 1, like DDPM) draws clean ones at 50 (data/models/MODEL_CARD.md, "How they must be sampled").
  config.preview.eta = 1.0
  if arg == 'runlocal':
    config.total_steps = 20
    config.log_every_steps = 5
    config.preview_every_steps = 20
    config.checkpoint_every_steps = 10
    config.preview.num = 4
    config.preview.steps = 10
  return config
