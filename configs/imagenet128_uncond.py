"""G_u: the unconditional (class-conditional, CFG) RGBD model on ImageNet 128 (reference 3.3).

  ivid-jax convert-checkpoint imagenet128_uncond.pt ckpt/uncond --config=configs/imagenet128_uncond.py
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg='runlocal'` shrinks the network for a smoke run on a laptop CPU."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # The authors' backbone arguments (their configs/rgbd_imagenet_adm_128_large_cfg.json);
  # UNet(**config.model) builds it.
  config.model = dict(
      image_size=128,
      in_channels=4,  # x_t (RGBD)
      out_channels=4,  # epsilon; no learned variance
      model_channels=256,
      num_res_blocks=2,
      num_classes=1000,
      has_null_class=True,  # label -1 = zero embedding, for classifier-free guidance
      channel_mult=(1, 1, 2, 3, 4),
      attention_resolutions=(32, 16, 8),  # feature-map sizes, not factors
      num_groups=32,
      num_heads=None,
      num_head_channels=64,
      dropout=0.0,
  )
  config.diffusion = ml_collections.ConfigDict()
  config.diffusion.schedule = 'linear'  # linear, cosine
  config.diffusion.num_steps = 1000
  config.diffusion.label_dropout = 0.1  # p_uncond
  config.diffusion.guidance = 3.0  # w in (1 + w) eps_c - w eps_u (the README's evaluation: 0.5)
  config.diffusion.sampler = 'ddpm'  # ddpm (all 1000 steps), ddim
  config.diffusion.steps = 1000
  if arg == 'runlocal':
    config.model.update(model_channels=32, image_size=32, channel_mult=(1, 2, 2),
                        attention_resolutions=(16, 8), num_groups=16, num_head_channels=16,
                        num_classes=10)
    config.diffusion.sampler = 'ddim'
    config.diffusion.steps = 10
  return config
