r"""G_u: the unconditional (class-conditional, CFG) RGBD model on ImageNet 128 (reference 3.3, 5).

  ivid-jax train --config=configs/imagenet128_uncond.py --workdir=runs/uncond \
      --config.input.data_dir=DATA   # imagenet_rgbd prepared there (data/imagenet.py)
  ivid-jax convert-checkpoint imagenet128_uncond.pt uncond.msgpack --config=configs/imagenet128_uncond.py

The training settings are the authors' (configs/rgbd_imagenet_adm_128_large_cfg.json,
train.py): batch 16 per device, AdamW lr 1e-4, EMA 0.9999, logs every 500 steps,
previews every 10k, checkpoints every 50k, 1M steps, float32.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg='runlocal'` shrinks the network and the run for a smoke run on a laptop CPU."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.kind = 'uncond'  # uncond (G_u: x_t only), cond (G_c: x_t + the warped condition)
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
  config.compute_dtype = 'float32'  # float32 (the authors' G_u), bfloat16 (params stay float32)
  config.init = 'torch'  # torch (the authors' PyTorch layer init), flax (Flax's defaults)
  config.init_from = ''  # a model file or training workdir to start from (G_c: G_u's export)
  config.init_from_ema = True  # from a workdir: its first EMA (False: the raw params)

  config.diffusion = ml_collections.ConfigDict()
  config.diffusion.schedule = 'linear'  # linear, cosine
  config.diffusion.num_steps = 1000
  config.diffusion.label_dropout = 0.1  # p_uncond
  config.diffusion.guidance = 3.0  # w in (1 + w) eps_c - w eps_u (the authors' evaluation: 0.5)
  config.diffusion.sampler = 'ddpm'  # ddpm (all 1000 steps), ddim
  config.diffusion.steps = 1000

  config.input = ml_collections.ConfigDict()
  config.input.dataset = 'imagenet_rgbd'  # synthetic_rgbd, imagenet_rgbd, rgbd_folder, random_smooth
  config.input.tfds_config = '128px_z_buffer'  # the TFDS builder config
  config.input.data_dir = ''  # TFDS data_dir ('' = ~/tensorflow_datasets)
  config.input.split = 'train'
  config.input.root = ''  # rgbd_folder: the dataset root (images/, depths/)
  config.input.view = 0  # multi-view datasets: the view trained on
  config.input.num_examples = 0  # random_smooth: how many
  config.input.batch_size = 0  # global batch; 0: per_device_batch_size x devices
  config.input.per_device_batch_size = 16
  config.input.worker_count = 0  # grain worker processes (0: threads)

  config.optim = ml_collections.ConfigDict()
  config.optim.lr = 1e-4
  config.optim.schedule = 'constant'  # constant, cosine (to 0 at total_steps)
  config.optim.warmup_steps = 0
  config.optim.weight_decay = 0.0
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  config.optim.grad_clip_norm = 0.0  # 0: no clipping
  config.optim.grad_accum_steps = 1  # micro-batches per step, gradients averaged
  config.ema = ml_collections.ConfigDict()
  config.ema.decays = (0.9999,)  # one EMA per rate; the first is exported and previewed
  config.ema.warmup = False  # decay min(d, (1 + n) / (10 + n)) at step n (short runs)
  config.parallel = ml_collections.ConfigDict()
  config.parallel.fsdp = False  # shard params, optimiser state and EMA over the devices
  config.parallel.fsdp_min_size = 2 ** 16  # smaller leaves stay replicated

  config.total_steps = 1_000_000
  config.log_every_steps = 500
  config.preview_every_steps = 10_000  # 0: no previews
  config.checkpoint_every_steps = 50_000
  config.keep_checkpoints = 2  # the latest ones kept
  config.keep_every_steps = 0  # also keep every checkpoint at a multiple of this (0: none)
  config.max_nonfinite_steps = 10  # consecutive skipped (NaN/inf) updates that stop the run
  config.writer = 'auto'  # auto (clu/TensorBoard if installed), clu, basic (no TensorFlow)
  config.profile_steps = 0  # profile this many steps (0: none), from profile_first_step on
  config.profile_first_step = 10
  config.preview = ml_collections.ConfigDict()
  config.preview.num = 16  # samples per preview
  config.preview.steps = 250  # DDIM steps (the authors' trainer: 250)
  config.preview.guidance = 3.0
  config.preview.clip_denoised = False  # x_0 clipped to [-1, 1] (samplers.ddim_sample)
  config.preview.eta = 0.0  # DDIM eta (0: deterministic, as the authors sample)
  if arg == 'runlocal':
    config.model.update(model_channels=32, image_size=32, channel_mult=(1, 2, 2),
                        attention_resolutions=(16, 8), num_groups=16, num_head_channels=16,
                        num_classes=10)
    config.diffusion.sampler = 'ddim'
    config.diffusion.steps = 10
    config.input.dataset = 'random_smooth'
    config.input.num_examples = 64
    config.input.batch_size = 8
    config.total_steps = 20
    config.log_every_steps = 5
    config.preview_every_steps = 20
    config.checkpoint_every_steps = 10
    config.preview.num = 4
    config.preview.steps = 10
  return config
