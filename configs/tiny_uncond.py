"""A tiny G_u on random smooth 16 px scenes: a run takes seconds (tests, smoke runs).

  ivid-jax train --config=configs/tiny_uncond.py --workdir=/tmp/tiny_uncond

`--config=configs/tiny_uncond.py:micro` shrinks the UNet further (one level, 8 channels, attention
only in the middle block): its step compiles in about a third of the time, for the tests that
compile a step per device layout or per process.
"""

import ml_collections

from ivid_jax.configs import imagenet128_uncond


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '', 'micro'):
    raise ValueError(f"tiny_uncond's argument is 'micro' or nothing, got {arg!r}")
  config = imagenet128_uncond.get_config()
  config.model.update(image_size=16, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                      attention_resolutions=(8,), num_groups=8, num_head_channels=8,
                      num_classes=10)  # random_smooth labels 0..9
  config.input.dataset = 'random_smooth'
  config.input.num_examples = 64
  config.input.batch_size = 8
  config.optim.lr = 1e-3
  config.ema.decays = (0.9, 0.99)
  config.ema.warmup = True
  config.total_steps = 8
  config.log_every_steps = 4
  config.preview_every_steps = 8
  config.checkpoint_every_steps = 4
  config.preview.num = 4
  config.preview.steps = 4
  if arg == 'micro':
    config.model.update(model_channels=8, channel_mult=(1,), attention_resolutions=(),
                        num_groups=4)
  return config
