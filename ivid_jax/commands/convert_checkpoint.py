"""ivid-jax convert-checkpoint SRC --out=DST: the authors' released weights -> a model file.

  ivid-jax convert-checkpoint imagenet128_uncond.pt --out=uncond.msgpack \\
      --config=configs/imagenet128_uncond.py
  ivid-jax convert-checkpoint imagenet128_cond.pt --out=cond.msgpack \\
      --config=configs/imagenet128_cond.py
  ivid-jax convert-checkpoint weights.npz --out=net.msgpack --backbone=their_config.json

SRC is a PyTorch state_dict (.pt/.pth, read with torch if installed) or an .npz
of the same tensors. Every tensor must map to a parameter of the UNet given by
--backbone (the authors' JSON config, or its backbone args) or by the `model`
section of --config; a missing, extra or mis-shaped one is an error naming it.
DST (--out, or a second argument) is one self-describing file
(`ivid_jax.models.model_file`: the UNet's fields, the network kind from its
input width, the params) that `ivid-jax sample`, the demo and training's
--config.init_from read. An existing DST is refused unless --overwrite.
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags
from ml_collections import config_flags

from ivid_jax.commands import outputs

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'A get_config() file whose `model` section is the network to convert into '
    '(e.g. configs/imagenet128_uncond.py).', lock_config=True)
_BACKBONE = flags.DEFINE_string(
    'backbone', None, "A JSON file with the authors' backbone args (or their whole config, "
    "e.g. configs/rgbd_imagenet_adm_128_large_cfg.json of their repository).")
_OUT = flags.DEFINE_string('out', None, 'The model file to write (required, or as a second '
                           'argument; refused if it exists, unless --overwrite).')
flags.declare_key_flag('overwrite')
POSITIONAL = (1, 2)  # SRC [DST] (ivid_jax.main.parse_only checks the count)


def _backbone_args() -> dict:
  if _BACKBONE.value:
    try:
      with open(_BACKBONE.value, encoding='utf-8') as f:
        args = json.load(f)
    except FileNotFoundError:
      raise FileNotFoundError(f'{_BACKBONE.value}: no such file (--backbone)') from None
    except json.JSONDecodeError as e:
      raise ValueError(f'{_BACKBONE.value}: not valid JSON ({e})') from e
    return args.get('backbone', {}).get('args', args)
  if _CONFIG.value is None or 'model' not in _CONFIG.value:
    raise app.UsageError('convert-checkpoint needs --backbone=JSON or a --config with a `model` '
                         'section (e.g. configs/imagenet128_uncond.py)')
  return dict(_CONFIG.value.model)


def main(argv: list[str]) -> None:
  given = argv[1:]
  if len(given) == 2 and _OUT.value is None:
    given, dst = given[:1], given[1]
  else:
    dst = _OUT.value
  if len(given) != 1 or dst is None:
    raise app.UsageError('convert-checkpoint expects SRC (the authors\' .pt or an .npz of its '
                         f'tensors) and --out=DST (the model file to write); got {argv[1:]}'
                         + ('' if dst else ' and no --out'))
  src = given[0]
  args = _backbone_args()
  outputs.check_out(dst, is_file=True)
  from ivid_jax.models import convert  # pylint: disable=g-import-not-at-top
  from ivid_jax.models import model_file  # pylint: disable=g-import-not-at-top
  model, params = convert.load_torch_state_dict(convert.read_state_dict(src), args, source=src)
  fields = {k: getattr(model, k) for k in model_file.unet_field_names()}
  path = model_file.save(dst, unet=fields, params=params, source=os.path.abspath(src))
  kind = model_file.kind_of(fields)
  print(f'converted {convert.param_count(params):,} parameters of {src} -> {path} ({kind} network)')
