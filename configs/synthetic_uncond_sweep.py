r"""A sweep over configs/synthetic_uncond.py: learning rate x EMA rate.

  ivid-jax sweep --config=configs/synthetic_uncond.py --sweep=configs/synthetic_uncond_sweep.py \
      --workdir=runs/sweep [--run]
"""


def get_sweep():
  return [{'optim.lr': lr, 'ema.decays': (decay,)}
          for lr in (1e-4, 2e-4, 4e-4) for decay in (0.999, 0.9995)]
