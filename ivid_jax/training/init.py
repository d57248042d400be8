"""Initial parameters: the authors' PyTorch initialisation, and fine-tuning from a trained network.

`torch_init` redraws a Flax params tree of the UNet as the authors' PyTorch
layers initialise (reference 3.1): every conv / dense kernel from
kaiming_uniform(a = sqrt 5), i.e. U(+-1 / sqrt(fan_in)), and its bias from
U(+-1 / sqrt(fan_in)); embeddings N(0, 1); GroupNorm scale 1, bias 0; and the
zero-initialised layers (each ResBlock's last conv, attention proj_out, the
final conv) stay zero, kernel and bias. Flax's default (lecun_normal, std
1 / sqrt(fan_in), zero biases) gives kernels about sqrt(3) = 1.7x the std of
PyTorch's. fan_in is the kernel's size without its output axis: kh kw c_in for
an HWIO conv, c_in for an (in, out) dense.

`widen` is the authors' `finetune_from` (reference 3.4): G_c starts from G_u's
weights, the first conv's input channels zero-padded from 4 to 10, so the
fine-tuned network initially ignores the condition and predicts as G_u does.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from absl import logging
from flax import traverse_util

Params = Any


def _layers(params: Params) -> dict[tuple[str, ...], dict[str, Any]]:
  """{module path: {leaf name: array}} of a params tree."""
  layers: dict[tuple[str, ...], dict[str, Any]] = {}
  for path, leaf in traverse_util.flatten_dict(params).items():
    layers.setdefault(path[:-1], {})[path[-1]] = leaf
  return layers


def torch_init(seed: int, params: Params) -> Params:
  """The authors' PyTorch initialisation of a Flax UNet params tree (module docstring).

  Drawn on the host with numpy, so it costs no compilation (per-leaf random
  draws under jit compile one threefry kernel each) and is the same for any
  device count or host count.

  Args:
    seed: leaf i (in sorted path order) draws from np.random.default_rng([seed, i]).
    params: the Flax init of the UNet (concrete arrays: they tell which layers are
      zero-initialised).

  Returns:
    A tree of numpy arrays of the same structure, shapes and dtypes.
  """
  out = {}
  for i, (path, leaves) in enumerate(sorted(_layers(params).items())):
    rng = np.random.default_rng([seed, i])
    new = {name: np.asarray(leaf) for name, leaf in leaves.items()}
    if 'kernel' in new:
      kernel = new['kernel']
      if np.any(kernel):  # zero-initialised layers (kernel and bias) stay zero
        bound = 1.0 / np.sqrt(np.prod(kernel.shape[:-1]))
        new['kernel'] = rng.uniform(-bound, bound, kernel.shape).astype(kernel.dtype)
        if 'bias' in new:
          new['bias'] = rng.uniform(-bound, bound, new['bias'].shape).astype(new['bias'].dtype)
    elif 'embedding' in new:
      new['embedding'] = rng.standard_normal(new['embedding'].shape).astype(
          new['embedding'].dtype)
    # GroupNorm scale (1) and bias (0) are PyTorch's defaults already.
    for name, leaf in new.items():
      out[path + (name,)] = leaf
  return traverse_util.unflatten_dict(out)


def widen(source: Params, target: Params, *, where: str = 'source') -> Params:
  """`source`'s values in `target`'s shapes: equal leaves copied, wider kernel inputs zero-padded.

  A kernel (conv HWIO or dense (in, out)) whose input axis (-2) is larger in
  `target` gets `source`'s values in its first channels and zeros in the rest
  (the authors' zero padding of the too-small dimension 1 of a torch weight).
  Anything else that differs is an error naming the parameters.

  Args:
    source: the trained network's params.
    target: the new network's params (arrays or ShapeDtypeStructs: only shapes and dtypes are read).
    where: what `source` is, for error messages (a file or workdir).

  Returns:
    A params tree with target's structure, as numpy arrays of target's dtypes.
  """
  src = {'/'.join(k): v for k, v in traverse_util.flatten_dict(source).items()}
  tgt = {'/'.join(k): v for k, v in traverse_util.flatten_dict(target).items()}
  missing, extra = sorted(set(tgt) - set(src)), sorted(set(src) - set(tgt))
  wrong, out, widened = [], {}, []
  for name in sorted(set(tgt) & set(src)):
    value = np.asarray(src[name])
    shape = tuple(tgt[name].shape)
    if not np.all(np.isfinite(value)):
      wrong.append(f'{name} holds NaN or inf')
      continue
    if value.shape == shape:
      out[name] = value.astype(tgt[name].dtype)
      continue
    grows_input = (name.endswith('/kernel') and value.ndim == len(shape) >= 2
                   and value.shape[:-2] == shape[:-2] and value.shape[-1] == shape[-1]
                   and value.shape[-2] < shape[-2])
    if not grows_input:
      wrong.append(f'{name} {value.shape} -> {shape}')
      continue
    pad = [(0, 0)] * value.ndim
    pad[-2] = (0, shape[-2] - value.shape[-2])
    out[name] = np.pad(value, pad).astype(tgt[name].dtype)
    widened.append(f'{name} {value.shape} -> {shape}')
  if missing or extra or wrong:
    raise ValueError(f'{where}: its network does not fit this one: missing {missing[:5]}, '
                     f'unexpected {extra[:5]}, unusable {wrong[:5]} '
                     '(only a kernel\'s input channels may grow, as for G_u -> G_c)')
  for line in widened:
    logging.info('init_from %s: widened %s with zeros', where, line)
  return traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in out.items()})


def read_pretrained(path: str | os.PathLike, *, ema: bool = True) -> Params:
  """The params of a model file (`ivid-jax export` or `convert-checkpoint`) or a training workdir.

  From a workdir: the latest checkpoint's first EMA (or, with ema=False, the raw params).
  """
  path = os.fspath(path)
  from ivid_jax.training import checkpoint  # pylint: disable=g-import-not-at-top
  if os.path.isdir(path):
    return checkpoint.load_params(path, ema=ema)[1]
  from ivid_jax.models import model_file  # pylint: disable=g-import-not-at-top
  return model_file.load(path).params
