"""The authors' PyTorch UNet weights -> Flax params of `ivid_jax.models.unet.UNet`.

Every key of the authors' state_dict maps to exactly one Flax parameter (and
the `time_embed.0.freqs` buffer is checked against the embedding we compute),
so a missing, extra or mis-shaped tensor is an error that names it. Layouts:
conv OIHW -> HWIO, conv1d (O, I, 1) and linear (O, I) -> (I, O), GroupNorm
weight -> scale.

  ivid-jax convert-checkpoint SRC.pt DST_DIR --config=configs/imagenet128_uncond.py
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ivid_jax.models import unet as unet_lib

# Sub-module names inside a block: the authors' Sequential indices -> ours.
_SUBMODULES = {
    'in_layers.0': 'in_norm/norm', 'in_layers.2': 'in_conv', 'emb_layers.1': 'emb_dense',
    'out_layers.0': 'out_norm/norm', 'out_layers.3': 'out_conv', 'skip_connection': 'skip',
    'norm': 'norm/norm', 'qkv': 'qkv', 'proj_out': 'proj_out', 'op': 'op', 'conv': 'conv',
}
_FREQS_KEY = 'time_embed.0.freqs'


def _module_path(prefix: str) -> str:
  """'input_blocks.4.1.qkv' -> 'input_blocks_4_1/qkv'."""
  m = re.fullmatch(r'(input_blocks|output_blocks)\.(\d+)\.(\d+)(?:\.(.+))?', prefix)
  if m:
    top, rest = f'{m[1]}_{m[2]}_{m[3]}', m[4]
  else:
    m = re.fullmatch(r'(middle_block|time_embed|out)\.(\d+)(?:\.(.+))?', prefix)
    if m:
      top, rest = f'{m[1]}_{m[2]}', m[3]
    elif prefix == 'label_emb':
      return 'label_emb'
    else:
      raise KeyError(prefix)
  if top in ('out_0',):
    return 'out_0/norm' if rest is None else None
  if rest is None:
    return top
  if rest not in _SUBMODULES:
    raise KeyError(prefix)
  return f'{top}/{_SUBMODULES[rest]}'


def _convert_tensor(path: str, leaf: str, w: np.ndarray) -> tuple[str, np.ndarray]:
  """(flax leaf name, array) for one torch tensor at module `path`."""
  if path.endswith('/norm') or path == 'out_0/norm':
    return {'weight': 'scale', 'bias': 'bias'}[leaf], w
  if path == 'label_emb':
    return 'embedding', w
  if leaf == 'bias':
    return 'bias', w
  if w.ndim == 4:
    return 'kernel', np.transpose(w, (2, 3, 1, 0))
  if w.ndim == 3:
    return 'kernel', np.transpose(w[..., 0])
  return 'kernel', np.transpose(w)


def torch_key_to_flax(key: str, value: np.ndarray) -> tuple[str, np.ndarray]:
  """Maps one state_dict entry to ('flax/param/path', converted array)."""
  prefix, leaf = key.rsplit('.', 1)
  try:
    path = _module_path(prefix)
  except KeyError:
    raise ValueError(f'state_dict key {key!r} is not part of the authors\' AdmUnet2d') from None
  name, array = _convert_tensor(path, leaf, np.asarray(value))
  return f'{path}/{name}', array


def param_count(tree) -> int:
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)))


def abstract_params(model: unet_lib.UNet) -> dict:
  """Parameter shapes of `model` without allocating them (`jax.eval_shape`)."""
  x = jnp.zeros((1, model.image_size, model.image_size, model.in_channels))
  t = jnp.zeros((1,), jnp.int32)
  classes = None if model.num_classes is None else jnp.zeros((1,), jnp.int32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x, t, classes))['params']


def _convert(state_dict: Mapping[str, Any], model: unet_lib.UNet, source: str) -> dict:
  """Flat {'a/b/kernel': numpy array} for `model`, or ValueError listing every problem."""
  expected = traverse_util.flatten_dict(abstract_params(model), sep='/')
  converted, problems = {}, []
  for key, value in state_dict.items():
    value = np.asarray(value.detach().cpu().numpy() if hasattr(value, 'detach') else value)
    if key == _FREQS_KEY:
      ours = np.asarray(unet_lib.timestep_frequencies(model.model_channels))
      if value.shape != ours.shape or (value.strides != (0,) and
                                       not np.allclose(value, ours, rtol=1e-6, atol=0)):
        problems.append(f'{key}: frequencies {value.shape} differ from the model\'s')
      continue
    try:
      path, array = torch_key_to_flax(key, value)
    except ValueError as e:
      problems.append(str(e))
      continue
    if path not in expected:
      problems.append(f'{key} -> {path}: no such parameter in this config')
    elif tuple(expected[path].shape) != array.shape:
      problems.append(f'{key} -> {path}: shape {array.shape}, the model needs '
                      f'{tuple(expected[path].shape)}')
    elif path in converted:
      problems.append(f'{key} -> {path}: mapped twice')
    else:
      converted[path] = array
  missing = sorted(set(expected) - set(converted))
  if missing:
    problems.append(f'{len(missing)} parameters have no tensor: {missing[:8]}')
  if problems:
    raise ValueError(f'{source}: cannot convert to this UNet config:\n  ' + '\n  '.join(problems))
  return converted


def load_torch_state_dict(state_dict: Mapping[str, Any], backbone_args: Mapping[str, Any], *,
                          source: str = 'state_dict', **model_overrides
                          ) -> tuple[unet_lib.UNet, dict]:
  """Builds the UNet of `backbone_args` and converts the authors' weights into its params.

  Args:
    state_dict: the authors' key names -> arrays (numpy, or torch tensors).
    backbone_args: the authors' backbone config dict (their `config_json`).
    source: where the weights came from, for error messages.
    **model_overrides: UNet fields to set, e.g. dtype=jnp.bfloat16.

  Returns:
    (model, params) with `model.apply({'params': params}, x, t, classes)`.

  Raises:
    ValueError naming every unmapped, missing or mis-shaped key.
  """
  model = unet_lib.from_backbone_args(dict(backbone_args), **model_overrides)
  flat = _convert(state_dict, model, source)
  params = {k: jnp.asarray(v, jnp.float32) for k, v in flat.items()}
  return model, traverse_util.unflatten_dict(params, sep='/')


def check_layout(shapes: Mapping[str, tuple[int, ...]], backbone_args: Mapping[str, Any], *,
                 source: str = 'layout') -> tuple[unet_lib.UNet, dict[str, str]]:
  """Checks that a state_dict of these shapes converts one to one, allocating nothing.

  Returns:
    (model, {torch key: flax path}); raises ValueError like `load_torch_state_dict`.
  """
  model = unet_lib.from_backbone_args(dict(backbone_args))
  # Zero-stride views: the converter's transposes work on them without memory.
  fake = {k: np.broadcast_to(np.float32(0), tuple(v)) for k, v in shapes.items()}
  _convert(fake, model, source)
  return model, {k: torch_key_to_flax(k, v)[0] for k, v in fake.items() if k != _FREQS_KEY}


def read_layout(path: str) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
  """Reads a '# config: {json}' + 'key<TAB>(shape)' layout file (tests/data/*_layout.txt)."""
  import json  # pylint: disable=g-import-not-at-top
  with open(path, encoding='utf-8') as f:
    lines = f.read().splitlines()
  if not lines or not lines[0].startswith('# config: '):
    raise ValueError(f'{path}: first line must be "# config: {{...}}"')
  config = json.loads(lines[0][len('# config: '):])
  shapes = {}
  for n, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    try:
      key, shape = line.split('\t')
      shapes[key] = tuple(int(v) for v in shape.strip('()').split(',') if v.strip())
    except ValueError:
      raise ValueError(f'{path}:{n}: expected "key<TAB>(shape)", got {line!r}') from None
  return config, shapes


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads the authors' weights from a torch .pt/.pth (needs torch) or an .npz of the same keys.

  An .npz may prefix keys with 'param/' (as tests/data/adm_small_ref.npz does);
  other arrays in it are ignored.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no such checkpoint file')
  if path.endswith('.npz'):
    try:
      data = np.load(path)
    except Exception as e:  # np.load raises several types for corrupt files.
      raise ValueError(f'{path}: not a readable .npz file ({e})') from e
    keys = [k for k in data.files if k.startswith('param/')] or data.files
    return {k.removeprefix('param/'): data[k] for k in keys}
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError(f'{path}: reading PyTorch checkpoints needs torch (pip install torch), '
                     'or convert it to .npz with numpy first') from e
  obj = torch.load(path, map_location='cpu', weights_only=True)
  if isinstance(obj, Mapping) and 'state_dict' in obj and isinstance(obj['state_dict'], Mapping):
    obj = obj['state_dict']
  if not isinstance(obj, Mapping):
    raise ValueError(f'{path}: expected a state_dict (a mapping of tensors), got {type(obj)}')
  return {k: v.numpy() for k, v in obj.items()}


def save_params(params: dict, directory: str) -> str:
  """Writes params as an orbax checkpoint (atomically: a temporary folder, then a rename)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = os.path.abspath(directory)
  if os.path.exists(directory):
    raise ValueError(f'{directory}: already exists; refusing to overwrite a checkpoint')
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(directory, params)
  checkpointer.wait_until_finished()
  return directory


def restore_params(directory: str, model: unet_lib.UNet) -> dict:
  """Reads params written by `save_params` for `model`'s config."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  abstract = abstract_params(model)
  return ocp.StandardCheckpointer().restore(os.path.abspath(directory), abstract)
