r"""G_c: the conditional (inpainting) RGBD model on ImageNet 128 (reference 2.7, 3.3, 5).

  ivid-jax train --config=configs/imagenet128_cond.py --workdir=runs/cond \
      --config.init_from=runs/uncond   # fine-tune from G_u (a workdir or a model file)
  ivid-jax convert-checkpoint imagenet128_cond.pt cond.msgpack --config=configs/imagenet128_cond.py

The training pair (warp to a random camera and back, pre-warp noise, blur,
RGB erosion) is built on device inside the training step (reference 2.5-2.6).
"""

import ml_collections

from ivid_jax.configs import imagenet128_uncond


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = imagenet128_uncond.get_config(arg)
  config.kind = 'cond'
  # [x_t (4), mask_rgb, y_rgb, y_z, mask]: the warped condition is concatenated.
  config.model.in_channels = 10
  config.diffusion.sampler = 'ddim'
  config.diffusion.steps = 50 if arg != 'runlocal' else 10
  config.diffusion.eta = 0.0
  # x_0 edits inside DDIM (reference 6.5); 0 switches one off.
  config.diffusion.replace_rgb = 0.1
  config.diffusion.replace_depth = 0.2
  config.diffusion.constrain_depth = 0.5
  # p_uncond_img: drop the whole image condition (the authors' configs: 0).
  config.diffusion.image_dropout = 0.0
  # The training pair (data.conditional.make_training_pair), the authors' settings.
  config.warp = ml_collections.ConfigDict()
  config.warp.ssaa = 3  # supersampling of both renders
  config.warp.padding = 'image'  # the source mesh's skirt: 'image' = the image size in pixels
  config.warp.prewarp_noise = True
  config.warp.postwarp_noise = False
  config.warp.blur_prob = 0.8  # condition RGB := blurred clean image, with this probability
  config.warp.erode_max_steps = 4  # RGB mask erosion by a box of 2k + 1, k in {0..4}
  config.warp.atol = 0.02  # the warp's discontinuity tolerances (on neighbouring pixels)
  config.warp.rtol = 0.02
  return config
