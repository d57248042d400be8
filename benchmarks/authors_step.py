"""The authors' PyTorch UNet step, timed from their own source folder (for same-run ratios).

  from benchmarks import authors_step
  authors_step.time_authors_step('/tmp/ivid', backbone_args, batch_size=8)
  # {'fwd_s': ..., 'step_s': ..., 'torch': '2.13.0+cpu', 'threads': 2, ...}

`authors_src` is a checkout of JeffreyXiang/ivid; torch (CPU) must be installed, and
easydict for their training objective (their `diffusion.frameworks` imports it). The
network is their `AdmUnet2d` built from the same backbone arguments as ours; a training step
is what their `BasicTrainer.run_step` does for one micro-batch without fp16 or EMA (our
step has no EMA either): zero_grad, their framework's `training_losses` (eps-MSE at uniform t
with 10% label dropout: `ClassifierFreeGuidance`; `InpaintCFG` when the network takes more
channels than it returns, with a random condition and mask), backward, `torch.optim.AdamW`
(lr 1e-4, weight decay 0). torch runs with its default thread count (the machine's cores).
Inputs are NCHW float32 on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from typing import Any, Callable

import numpy as np


@dataclasses.dataclass
class AuthorsStep:
  """Callables running the authors' forward pass / training step once (each returns a float)."""
  forward: Callable[[], float]
  step: Callable[[], float]
  num_params: int
  info: dict[str, Any]


@contextlib.contextmanager
def _on_path(folder: str):
  sys.path.insert(0, folder)
  try:
    yield
  finally:
    sys.path.remove(folder)


def build_authors_step(authors_src: str, backbone_args: dict, batch_size: int,
                       *, seed: int = 0) -> AuthorsStep:
  """The authors' `AdmUnet2d` and AdamW step on random inputs, ready to be timed.

  Args:
    authors_src: a checkout of the authors' repository (holds `diffusion/backbones/adm.py`).
    backbone_args: their backbone arguments (our `UNet` fields; tuples are fine).
    batch_size: images per step.
  """
  adm_file = os.path.join(authors_src, 'diffusion', 'backbones', 'adm.py')
  if not os.path.isfile(adm_file):
    raise FileNotFoundError(f'{authors_src!r} is not a checkout of the authors\' code: '
                            f'{adm_file} is missing')
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError('timing the authors\' step needs torch (pip install torch, CPU build)') from e
  with _on_path(os.path.abspath(authors_src)):
    # pylint: disable=import-outside-toplevel
    from diffusion.backbones.adm import AdmUnet2d
    try:
      from diffusion.frameworks import ClassifierFreeGuidance, InpaintCFG
    except ImportError as e:
      raise ImportError(f'the authors\' training objective ({authors_src}/diffusion/frameworks) '
                        f'could not be imported: {e}') from e

  args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in backbone_args.items()
          if k not in ('dtype', 'remat')}
  torch.manual_seed(seed)
  net = AdmUnet2d(**args).train()
  size, c_in, c_out = args['image_size'], args['in_channels'], args['out_channels']
  gen = torch.Generator().manual_seed(seed)
  x0 = torch.randn(batch_size, c_out, size, size, generator=gen)
  t = torch.arange(batch_size, dtype=torch.long) * 97 % 1000
  classes = (torch.arange(batch_size, dtype=torch.long) % args['num_classes']
             if args.get('num_classes') is not None else None)
  if c_in == c_out:
    framework = ClassifierFreeGuidance(net, p_uncond=0.1)
    kwargs = {'x_0': x0, 'classes': classes}
    x_in = x0
  else:
    framework = InpaintCFG(net, p_uncond=0.1)
    mask = (torch.rand(batch_size, 1, size, size, generator=gen) > 0.5).float()
    # Their 10-channel G_c input has a separate RGB mask (without it they build 9 channels).
    mask_rgb = mask * (torch.rand(batch_size, 1, size, size, generator=gen) > 0.2).float()
    y = torch.randn(batch_size, c_out, size, size, generator=gen)
    kwargs = {'x_0': x0, 'y': y, 'mask': mask, 'mask_rgb': mask_rgb, 'classes': classes}
    x_in = framework.make_cond_inputs(x0, y, mask, mask_rgb=mask_rgb)
  optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.0)

  def forward() -> float:
    with torch.no_grad():
      return float(net(x_in, t, classes).sum())

  def step() -> float:
    optimizer.zero_grad(set_to_none=False)
    loss = framework.training_losses(**kwargs)['loss']
    loss.backward()
    optimizer.step()
    return float(loss.detach())

  info = {'torch': torch.__version__, 'threads': torch.get_num_threads()}
  return AuthorsStep(forward, step, sum(p.numel() for p in net.parameters()), info)


def timed(fn: Callable[[], Any]) -> float:
  """Seconds one call of fn takes."""
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def time_authors_step(authors_src: str, backbone_args: dict, batch_size: int, *,
                      repeats: int = 3) -> dict:
  """Median seconds of the authors' forward pass and AdamW training step (after one warm-up each).

  Returns:
    {'fwd_s', 'step_s': medians of `repeats` calls, 'fwd_times', 'step_times': every call,
     'num_params', 'torch': version, 'threads': torch's intra-op threads}.
  """
  run = build_authors_step(authors_src, backbone_args, batch_size)
  run.forward()
  fwd_times = [timed(run.forward) for _ in range(repeats)]
  run.step()
  step_times = [timed(run.step) for _ in range(repeats)]
  return {'fwd_s': float(np.median(fwd_times)), 'step_s': float(np.median(step_times)),
          'fwd_times': fwd_times, 'step_times': step_times, 'num_params': run.num_params,
          **run.info}
