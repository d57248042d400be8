"""A hand-written DDIM for the 'network' whose x_0 is half of x_t: the expected values of tests.

That network makes every DDIM step linear in x_t, x_prev = c x_t + s n (n standard normal), so
a whole run from x_T is x_0 = (prod c) x_T plus Gaussian noise of a known variance. The
coefficients are written out here from the paper's equations (Song et al. 2021, eq. 12) over
the linear schedule's alpha_bar computed with numpy, independently of ivid_jax's samplers.
"""

import numpy as np


def linear_alpha_bar(num_steps: int = 1000) -> np.ndarray:
  """alpha_bar [T] of Ho et al.'s linear schedule: beta from 1e-4 to 0.02 at T = 1000."""
  betas = np.linspace(0.1 / num_steps, 20.0 / num_steps, num_steps, dtype=np.float64)
  return np.cumprod(1.0 - betas)


def half_x0_ddim(steps: int, eta: float, num_steps: int = 1000) -> tuple[float, float]:
  """(gain, noise std) of DDIM with x_0 = x_t / 2: its output is gain x_T + std n.

  Timesteps as the authors space them: t = jump (i + 1) for i = steps-1 .. 0, jump = T // steps,
  the network seeing t - 1; the last step returns x_0 (no noise).
  """
  alpha_bar = linear_alpha_bar(num_steps)
  jump = num_steps // steps
  gain, variance = 1.0, 0.0
  for i in range(steps - 1, -1, -1):
    ab = alpha_bar[jump * (i + 1) - 1]
    ab_prev = 1.0 if i == 0 else alpha_bar[jump * i - 1]
    sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
    # x_0 = x / 2, and eps = (x - sqrt(ab) x_0) / sqrt(1 - ab): both multiples of x.
    eps_per_x = (1 - 0.5 * np.sqrt(ab)) / np.sqrt(1 - ab)
    c = 0.5 * np.sqrt(ab_prev) + np.sqrt(max(1 - ab_prev - sigma ** 2, 0.0)) * eps_per_x
    gain *= c
    variance = variance * c ** 2 + sigma ** 2  # the earlier noise is scaled by this step too
  return float(gain), float(np.sqrt(variance))
