"""ivid-jax sample: generate 3D scenes (multi-view RGBD), view by view.

  ivid-jax sample --uncond=uncond.msgpack --cond=cond.msgpack --viewset=3x9 --seeds=0-7 \\
      --classes=mod --steps_uncond=1000 --steps_cond=50 --guidance=3 --batch_size=8 --out=DIR
  ivid-jax sample --cond=cond.msgpack --image=photo.jpg [--depth=photo.npz] --out=DIR
  ivid-jax sample --uncond=data/models/synthetic_uncond.msgpack \\
      --cond=data/models/synthetic_cond.msgpack --preset=demo --seeds=0-3 --classes=room

View 0 comes from the unconditional network (DDPM when --steps_uncond is
the schedule's length, 1000, else DDIM), or from --image (image-to-3D: the
photo and its depth, from --depth in the authors' .npz format or estimated
with --depth_model, preprocessed as training data); every further view from
the conditional network, conditioned on all earlier views warped into its
camera (DDIM, eta 0 unless --eta_cond, the authors' x0 edits). Networks are model files
(`ivid-jax export`, `ivid-jax convert-checkpoint`).

The sampler flags default to a preset (--preset): `authors` (the default here: the authors'
settings) or `demo` (the settings `ivid-jax demo` uses for the shipped, briefly trained
networks); an explicit flag overrides the preset's value. --help lists both presets.

View sets: uncond (view 0 only), random (one novel view per scene, yaw ~
N(0, 0.3^2), pitch ~ N(0, 0.15^2): the evaluation protocol), 3x9 (the
authors' 27 views), orbit[:N] (a full turn in N views), or yaw,pitch pairs in
radians: --viewset="0,0;0.3,0;-0.3,0".

Writes the authors' layout under --out (default outputs/sample): scenes/scene_<suffix>.npz (every
view, its depth and camera, the class and seed), grids/ (RGB and colourised
depth), conds/ (the aggregated conditions), results/ (single images for
metrics), with <suffix> = class<c>_seed<s>; `ivid-jax render` makes videos and
meshes from them. A seed always gives the same scene (whatever the batch
size or device count). With several devices each batch is split over all of
them.

  ivid-jax sample --dry_run --dry_run_devices=8 --uncond=configs/imagenet128_uncond.py \\
      --cond=configs/imagenet128_cond.py   # per-device memory, FLOPs and scenes per hour

With --dry_run, --uncond and --cond may be config files (no weights needed).
"""

from __future__ import annotations

import json
import os
import time

from absl import app
from absl import flags

from ivid_jax.commands import dry_run_flags
from ivid_jax.commands import outputs
from ivid_jax.commands import sampler_flags

flags.adopt_module_key_flags(dry_run_flags)
flags.adopt_module_key_flags(sampler_flags)
flags.declare_key_flag('overwrite')

_UNCOND = flags.DEFINE_string('uncond', None, 'Model file of the unconditional network (view 0).')
_COND = flags.DEFINE_string('cond', None, 'Model file of the conditional network (views 1..).')
_VIEWSET = flags.DEFINE_string('viewset', '3x9', 'uncond, random, 3x9, orbit[:N] or '
                               '"yaw,pitch;yaw,pitch;..." (radians, generation order).')
_OUT = flags.DEFINE_string('out', outputs.default_out('sample'), 'Output folder (refused if it '
                           'holds files, unless --overwrite).')
_IMAGE = flags.DEFINE_string('image', None, 'Image-to-3D: a photo to use as view 0.')
_DEPTH = flags.DEFINE_string('depth', None, "The photo's relative inverse depth, an .npz in the "
                             "authors' format (what ivid-jax estimate-depth writes).")
_DEPTH_MODEL = flags.DEFINE_string(
    'depth_model', 'Intel/dpt-beit-large-512', 'Depth backend when --image comes without '
    "--depth (a transformers model; pip install 'ivid-jax[depth]'), or tiny-random.")


def _bar(total: int, desc: str):
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, desc=desc, unit='view', leave=False)


def _write_batches(seeds: list[int], batches, settings, out: str, num_views: int,
                   batch_size: int) -> str:
  """Draws the batches of `sampler.generate` with a progress bar each and writes their scenes
  (process 0); the scenes folder."""
  import jax  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import chain  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import sampler  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import scene_io  # pylint: disable=g-import-not-at-top
  paths = scene_io.make_dirs(out)
  start, done = time.time(), 0
  per_batch = sampler.effective_batch_size(batch_size)
  for first in range(0, len(seeds), per_batch):
    bar = _bar(num_views, f'scenes {first + 1}-{min(first + per_batch, len(seeds))}')
    seen = [0]

    def advance(view, bar=bar, seen=seen):
      # Every device reports every view: count each view once.
      if view + 1 > seen[0]:
        bar.update(view + 1 - seen[0])
        seen[0] = view + 1

    with chain.progress_to(advance):
      batch = next(batches)
    bar.close()
    if jax.process_index() == 0:
      for scene, conds in scene_io.scenes_from_batch(batch, settings):
        scene_io.write_outputs(paths, scene, conds)
    done += len(batch.seeds)
    print(f'{done}/{len(seeds)} scenes, {time.time() - start:.1f} s', flush=True)
  return paths['scenes']


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'sample takes no positional arguments, got {argv[1:]}')
  opts = sampler_flags.values('authors')
  if dry_run_flags.DRY_RUN.value:
    if not (_UNCOND.value and _COND.value):
      raise app.UsageError('sample --dry_run needs --uncond and --cond (config or model files)')
    from ivid_jax.sampling import dry_run  # pylint: disable=g-import-not-at-top
    dry_run.main(_UNCOND.value, _COND.value, viewset=_VIEWSET.value,
                 batch_size=opts['batch_size'], json_path=dry_run_flags.JSON.value)
    return
  if not _IMAGE.value and not _UNCOND.value:
    raise app.UsageError('sample needs --uncond=MODEL_FILE (or --image=PHOTO for image-to-3D)')
  try:
    classes = sampler_flags.class_spec(opts['classes'])
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from ivid_jax import atomic  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import photo  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import sampler  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import viewsets  # pylint: disable=g-import-not-at-top

  try:
    name, _ = viewsets.parse(_VIEWSET.value)
    seeds = sampler.parse_int_list(opts['seeds'])
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  if not seeds:
    raise app.UsageError(f'--seeds={opts["seeds"]!r} gives no seed')
  needs_cond = name != 'uncond' or bool(_IMAGE.value)
  if _COND.value is None and needs_cond:
    raise app.UsageError(f'the {_VIEWSET.value} viewset needs --cond=MODEL_FILE')
  out = outputs.check_out(_OUT.value)
  nets = sampler.load_networks(None if _IMAGE.value else _UNCOND.value,
                               _COND.value if needs_cond else None, guidance=opts['guidance'])
  if isinstance(classes, list):
    classes = sampler_flags.class_labels(classes, nets.num_classes)
  first_views = None
  if _IMAGE.value:
    view0 = photo.first_view(_IMAGE.value, nets.image_size, depth_path=_DEPTH.value,
                             depth_model=_DEPTH_MODEL.value)
    first_views = np.stack([view0] * len(seeds))
    if 'classes' not in sampler_flags.explicit() and nets.num_classes is not None:
      classes = '-1' if nets.has_null_class else 'mod'
  settings = sampler_flags.chain_settings(opts, nets.image_size)
  record = {'uncond': nets.sources.get('uncond'), 'cond': nets.sources.get('cond'),
            'viewset': _VIEWSET.value, 'seeds': seeds, 'classes': classes,
            'preset': sampler_flags.preset_name('authors'),
            'image': _IMAGE.value, 'depth': _DEPTH.value, 'guidance': opts['guidance'],
            'settings': settings._asdict(), 'devices': jax.device_count()}
  atomic.write_atomic(os.path.join(out, 'run.json'),
                      lambda f: f.write(json.dumps(record, indent=1).encode()))
  batches = sampler.generate(
      nets, seeds, viewset=_VIEWSET.value, classes=classes, batch_size=opts['batch_size'],
      first_views=first_views, settings=settings, progress=True)
  num_views = viewsets.make(_VIEWSET.value, num_scenes=1).num_views if name != 'random' else 2
  scenes = _write_batches(seeds, batches, settings, out, num_views, opts['batch_size'])
  print(f'scenes: {scenes}')
