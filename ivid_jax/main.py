"""The `ivid-jax` command.

  ivid-jax warp-demo [--config=configs/warp_demo.py] [--config.warp.ssaa=2] [--workdir=DIR]
  ivid-jax estimate-depth --images=ROOT/images --out=ROOT/depths [--model=ID|PATH]

Commands:
  warp-demo   forward-backward warps of bundled RGBD images (the conditional
              model's training conditions): writes warp_grid.png and
              warp_swing.gif to --workdir. Runs on CPU in well under a minute.
  convert-checkpoint SRC DST
              the authors' PyTorch UNet weights (SRC: a .pt state_dict, read
              with torch if installed, or an .npz of the same tensors) -> an
              orbax checkpoint of Flax params at DST, for the network of
              --config's `model` section or of --backbone (the authors' JSON
              config, or its backbone args). Every tensor must map.
  estimate-depth
              monocular depth in the authors' format: for each image
              <--images>/<rel>.<ext> (recursive), or each example of
              --tfds=NAME[:split], a file <--out>/<rel>.npz holding one fp16
              relative inverse depth map (key arr_0) at the image's size.
              Batched, with a progress bar; resumable (finished files are
              skipped). --model: a transformers depth model, hub id or local
              folder (default Intel/dpt-beit-large-512, the authors' MiDaS
              DPT-BEiT-L-512; needs pip install 'ivid-jax[depth]'), or
              tiny-random (an untrained net for smoke runs, not real depth).

Flags:
  --config      a get_config() file (default: the packaged configs/warp_demo.py);
                any field can be overridden: --config.num_cameras=8
  --workdir     output folder (default: outputs/warp_demo)
  --backbone    convert-checkpoint: a JSON file of the authors' backbone args
  --images, --tfds, --data_dir, --out, --model, --batch_size, --depth_scale,
  --skip_bad_examples
                estimate-depth (see ivid-jax --helpfull for each)
  --helpfull    every flag, including JAX's and absl's
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ivid_jax import configs as _configs

_DEFAULT_CONFIG = os.path.join(os.path.dirname(_configs.__file__), 'warp_demo.py')

_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'A get_config() file; fields can be overridden, e.g. '
    '--config.warp.ssaa=2.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'outputs/warp_demo', 'Where outputs are written.')
_BACKBONE = flags.DEFINE_string(
    'backbone', None, 'convert-checkpoint: JSON file with the authors\' backbone args (or '
    'their whole config); default: the `model` section of --config.')

_IMAGES = flags.DEFINE_string(
    'images', None, 'estimate-depth: a folder of images (searched recursively), e.g. '
    'ROOT/images of the authors\' layout.')
_TFDS = flags.DEFINE_string(
    'tfds', None, 'estimate-depth: a TFDS dataset prepared as array_record, NAME or '
    'NAME:SPLIT (default split train), read with tfds.data_source.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'estimate-depth: TFDS data_dir for --tfds.')
_OUT = flags.DEFINE_string(
    'out', None, 'estimate-depth: the depth folder (ROOT/depths); default: a `depths` folder '
    'beside --images when that folder is called `images`.')
_MODEL = flags.DEFINE_string(
    'model', 'Intel/dpt-beit-large-512', 'estimate-depth: a transformers depth model (hub id '
    'or local folder; pip install \'ivid-jax[depth]\') or tiny-random (untrained, smoke runs).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 8, 'estimate-depth: images per model call.')
_DEPTH_SCALE = flags.DEFINE_enum(
    'depth_scale', 'auto', ['auto', 'midas', 'max'], 'estimate-depth: midas keeps MiDaS/DPT '
    'units; max scales each map to a maximum of 12504, read by the loader as disparity 2 '
    '(depth 0.5); auto picks midas for DPT models, else max.')
_SKIP_BAD = flags.DEFINE_bool(
    'skip_bad_examples', False, 'Log, count and skip unreadable images instead of stopping.')

COMMANDS = {'warp-demo': 0, 'convert-checkpoint': 2, 'estimate-depth': 0}  # -> positional args


def _backbone_args() -> dict:
  if _BACKBONE.value:
    with open(_BACKBONE.value, encoding='utf-8') as f:
      try:
        args = json.load(f)
      except json.JSONDecodeError as e:
        raise app.UsageError(f'{_BACKBONE.value}: not valid JSON ({e})') from e
    return args.get('backbone', {}).get('args', args)
  if 'model' not in _CONFIG.value:
    raise app.UsageError('convert-checkpoint needs --backbone=JSON or a --config with a `model` '
                         'section (e.g. configs/imagenet128_uncond.py)')
  return dict(_CONFIG.value.model)


def _estimate_depth() -> None:
  from ivid_jax.data import estimate_depth  # pylint: disable=g-import-not-at-top
  out = _OUT.value
  images = _IMAGES.value
  if out is None and images and os.path.basename(os.path.normpath(images)) == 'images':
    out = os.path.join(os.path.dirname(os.path.normpath(images)), 'depths')
  if (_IMAGES.value is None) == (_TFDS.value is None) or out is None:
    raise app.UsageError('estimate-depth needs exactly one of --images=DIR or --tfds=NAME[:split], '
                         'and --out=DIR (unless --images is a folder called `images`)')
  try:
    summary = estimate_depth.run(
        out=out, images=_IMAGES.value, tfds_name=_TFDS.value, data_dir=_DATA_DIR.value,
        model=_MODEL.value, batch_size=_BATCH_SIZE.value, depth_scale=_DEPTH_SCALE.value,
        skip_bad_examples=_SKIP_BAD.value)
  except (ImportError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e
  except estimate_depth.BadExampleError as e:
    raise app.UsageError(f'{e}\n(--skip_bad_examples logs, counts and skips such images; '
                         'rerunning resumes where this run stopped)') from e
  print(summary.report())
  print(f'depths: {out}')


def main(argv: list[str]) -> None:
  if len(argv) < 2 or argv[1] not in COMMANDS or len(argv) != 2 + COMMANDS[argv[1]]:
    raise app.UsageError(f'Usage: ivid-jax COMMAND [ARGS] [flags], COMMAND one of '
                         f'{list(COMMANDS)}. See ivid-jax --help.')
  if argv[1] == 'estimate-depth':
    _estimate_depth()
  elif argv[1] == 'convert-checkpoint':
    from ivid_jax import convert  # pylint: disable=g-import-not-at-top
    src, dst = argv[2], argv[3]
    try:
      model, params = convert.load_torch_state_dict(convert.read_state_dict(src),
                                                    _backbone_args(), source=src)
      path = convert.save_params(params, dst)
    except (ValueError, FileNotFoundError) as e:
      raise app.UsageError(str(e)) from e
    print(f'converted {convert.param_count(params):,} parameters of {src} -> {path}')
  elif argv[1] == 'warp-demo':
    from ivid_jax.demos import warp_demo  # Imported late so that --help stays fast.
    outputs = warp_demo.run(_CONFIG.value, _WORKDIR.value)
    for name, path in outputs.items():
      if path:
        logging.info('%s: %s', name, path)
        print(f'{name}: {path}')


def run() -> None:
  """Console-script entry point."""
  # absl's --help prints the __main__ module's docstring: make it this one.
  sys.modules['__main__'].__doc__ = __doc__
  app.run(main, argv=sys.argv)


if __name__ == '__main__':
  run()
