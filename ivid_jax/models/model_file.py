"""One self-describing file per trained network: the UNet's fields, its role and its params.

The trainer's `ivid-jax export` and `ivid-jax convert-checkpoint` (the
authors' released weights) both write this file and the sampler, the demo and
`--config.init_from` read it, so a network travels as one file whatever made
it. It is Flax's msgpack serialisation (arrays chunked, so the 1.7 GB
ImageNet-128 networks fit) of

  {'meta': JSON text, 'params': the UNet's params tree (float32)}

with meta = {'format': 'ivid-jax-model', 'version': 1, 'kind': 'uncond' or
'cond', 'unet': UNet(**unet) fields, 'diffusion': {'schedule', 'num_steps'},
and whatever provenance the writer adds (training step, source file, ...)}.

The kind says which of IVID's two networks it is: 'uncond' draws the first
view (4 input channels: x_t), 'cond' every further view (10: x_t and the
warped condition, reference 2.7).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np
from flax import serialization

from ivid_jax import atomic
from ivid_jax.models import unet as unet_lib

FORMAT = 'ivid-jax-model'
VERSION = 1
KINDS = ('uncond', 'cond')
# The UNet input width of each kind (reference 2.7, 3.3).
IN_CHANNELS = {'uncond': 4, 'cond': 10}
DEFAULT_DIFFUSION = {'schedule': 'linear', 'num_steps': 1000}


class ModelFile(NamedTuple):
  """A network read back from a model file.

  Attributes:
    model: the UNet module (its fields from the file).
    params: the params tree (numpy float32 arrays).
    kind: 'uncond' or 'cond'.
    meta: everything in the file's meta (unet, diffusion, provenance).
  """
  model: unet_lib.UNet
  params: Any
  kind: str
  meta: dict[str, Any]

  @property
  def diffusion(self) -> dict[str, Any]:
    return {**DEFAULT_DIFFUSION, **self.meta.get('diffusion', {})}


# Fields of the UNet that are compute choices of a run, not part of the network.
_RUNTIME_FIELDS = ('dtype', 'remat', 'impl')


def unet_field_names() -> tuple[str, ...]:
  """The UNet fields a model file stores (everything but the compute choices)."""
  return tuple(f for f in unet_lib.UNet.__dataclass_fields__
               if f not in ('parent', 'name') + _RUNTIME_FIELDS)


def kind_of(unet_kwargs: Mapping[str, Any]) -> str:
  """'uncond' or 'cond' from the UNet's input width."""
  for kind, channels in IN_CHANNELS.items():
    if unet_kwargs.get('in_channels') == channels:
      return kind
  raise ValueError(f"a UNet with in_channels={unet_kwargs.get('in_channels')} is neither IVID "
                   f'network (uncond: 4, cond: 10)')


def _jsonable(value: Any) -> Any:
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def save(path: str | os.PathLike, *, unet: Mapping[str, Any], params: Any,
         kind: str | None = None, diffusion: Mapping[str, Any] | None = None,
         **provenance: Any) -> str:
  """Writes a model file atomically (a temporary file in the same folder, then a rename).

  Args:
    path: the file to write; an existing file is replaced only once the new
      one is complete.
    unet: the UNet's fields (`UNet(**unet)` rebuilds it).
    params: its params tree (any arrays; stored as numpy).
    kind: 'uncond' or 'cond'; default from unet['in_channels'].
    diffusion: {'schedule', 'num_steps'} the network was trained with.
    **provenance: JSON-able extras stored in meta (e.g. step, source, config).

  Returns:
    The absolute path written.
  """
  path = os.path.abspath(os.fspath(path))
  kind = kind or kind_of(unet)
  if kind not in KINDS:
    raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
  model = unet_lib.UNet(**_unet_fields(unet, path))
  _check_params(model, params, path)
  meta = {'format': FORMAT, 'version': VERSION, 'kind': kind,
          'unet': _jsonable(_unet_fields(unet, path)),
          'diffusion': _jsonable({**DEFAULT_DIFFUSION, **(diffusion or {})}),
          **_jsonable(provenance)}
  state = {'meta': json.dumps(meta), 'params': jax.tree.map(np.asarray, jax.device_get(params))}
  data = serialization.msgpack_serialize(state)
  atomic.write_atomic(path, lambda f: f.write(data))
  return path


def _unet_fields(unet: Mapping[str, Any], path: str) -> dict[str, Any]:
  known = set(unet_lib.UNet.__dataclass_fields__) - {'parent', 'name'}
  unknown = set(unet) - known
  if unknown:
    raise ValueError(f'{path}: unknown UNet fields {sorted(unknown)}')
  fields = {k: v for k, v in unet.items() if k not in _RUNTIME_FIELDS}
  for key in ('attention_resolutions', 'channel_mult'):
    if key in fields:
      fields[key] = tuple(fields[key])
  return fields


def _check_params(model: unet_lib.UNet, params: Any, path: str) -> None:
  """Every leaf of `params` has the shape the model's own init gives it, and nothing is missing."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  s = model.image_size
  classes = None if model.num_classes is None else np.zeros((1,), np.int32)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), np.zeros((1, s, s, model.in_channels), np.float32),
                         np.zeros((1,), np.int32), classes))['params']
  want = {'/'.join(k): v.shape for k, v in traverse_util.flatten_dict(shapes).items()}
  try:
    have = {'/'.join(k): np.shape(v) for k, v in traverse_util.flatten_dict(params).items()}
  except (TypeError, AttributeError) as e:
    raise ValueError(f'{path}: params are not a nested dict of arrays ({e})') from None
  missing = sorted(set(want) - set(have))
  extra = sorted(set(have) - set(want))
  wrong = sorted(f'{k} {have[k]} (expected {want[k]})' for k in set(want) & set(have)
                 if tuple(have[k]) != tuple(want[k]))
  if missing or extra or wrong:
    raise ValueError(f'{path}: params do not match the UNet: missing {missing[:5]}, '
                     f'unexpected {extra[:5]}, wrong shapes {wrong[:5]}')


def load(path: str | os.PathLike, *, expect_kind: str | None = None,
         **unet_overrides: Any) -> ModelFile:
  """Reads a model file written by `save`.

  Args:
    path: the file.
    expect_kind: if given, a file of the other kind is an error (e.g. the
      unconditional network passed where the conditional one is needed).
    **unet_overrides: compute choices for the rebuilt UNet (dtype, remat, impl).

  Raises:
    FileNotFoundError naming a missing file; ValueError naming the file for
    anything else wrong (not a model file, another kind, params that do not
    fit the UNet).
  """
  path = os.path.abspath(os.fspath(path))
  if not os.path.isfile(path):
    hint = (' (a folder: pass the exported file, e.g. ivid-jax export --workdir=DIR '
            '--out=FILE)' if os.path.isdir(path) else '')
    raise FileNotFoundError(f'{path}: no such model file{hint}')
  with open(path, 'rb') as f:
    data = f.read()
  try:
    state = serialization.msgpack_restore(data)
    meta = json.loads(state['meta'])
    params = state['params']
  except Exception as e:  # msgpack raises several types for foreign or truncated files.
    raise ValueError(f'{path}: not an ivid-jax model file ({type(e).__name__}: {e}); write one '
                     'with `ivid-jax export` or `ivid-jax convert-checkpoint`') from None
  if not isinstance(meta, dict) or meta.get('format') != FORMAT:
    raise ValueError(f'{path}: not an ivid-jax model file (format {meta.get("format")!r})')
  if meta.get('version', 0) > VERSION:
    raise ValueError(f'{path}: model file version {meta["version"]} is newer than this '
                     f'ivid-jax reads ({VERSION}); upgrade ivid-jax')
  kind = meta.get('kind')
  if kind not in KINDS:
    raise ValueError(f'{path}: unknown model kind {kind!r}')
  if expect_kind is not None and kind != expect_kind:
    raise ValueError(f'{path}: this is the {kind} network ({IN_CHANNELS[kind]} input channels) '
                     f'but the {expect_kind} one ({IN_CHANNELS[expect_kind]} input channels) is '
                     'needed here')
  model = unet_lib.UNet(**_unet_fields(meta['unet'], path), **unet_overrides)
  _check_params(model, params, path)
  return ModelFile(model=model, params=params, kind=kind, meta=meta)
