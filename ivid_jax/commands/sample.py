"""ivid-jax sample: generate 3D scenes (multi-view RGBD), view by view.

  ivid-jax sample --uncond=uncond.msgpack --cond=cond.msgpack --viewset=3x9 --seeds=0-7 \\
      --classes=mod --steps_uncond=1000 --steps_cond=50 --guidance=3 --batch_size=8 --out=DIR
  ivid-jax sample --cond=cond.msgpack --image=photo.jpg [--depth=photo.npz] --out=DIR

View 0 comes from the unconditional network (DDPM when --steps_uncond is
the schedule's length, 1000, else DDIM), or from --image (image-to-3D: the
photo and its depth, from --depth in the authors' .npz format or estimated
with --depth_model, preprocessed as training data); every further view from
the conditional network, conditioned on all earlier views warped into its
camera (DDIM, eta 0 unless --eta_cond, the authors' x0 edits). Networks are model files
(`ivid-jax export`, `ivid-jax convert-checkpoint`).

View sets: uncond (view 0 only), random (one novel view per scene, yaw ~
N(0, 0.3^2), pitch ~ N(0, 0.15^2): the evaluation protocol), 3x9 (the
authors' 27 views), orbit[:N] (a full turn in N views), or yaw,pitch pairs in
radians: --viewset="0,0;0.3,0;-0.3,0".

Writes the authors' layout under --out: scenes/scene_<suffix>.npz (every
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

flags.adopt_module_key_flags(dry_run_flags)

_UNCOND = flags.DEFINE_string('uncond', None, 'Model file of the unconditional network (view 0).')
_COND = flags.DEFINE_string('cond', None, 'Model file of the conditional network (views 1..).')
_VIEWSET = flags.DEFINE_string('viewset', '3x9', 'uncond, random, 3x9, orbit[:N] or '
                               '"yaw,pitch;yaw,pitch;..." (radians, generation order).')
_SEEDS = flags.DEFINE_string('seeds', '0-7', 'Seeds, one scene each: e.g. 0-7,12.')
_CLASSES = flags.DEFINE_string(
    'classes', None, 'mod (seed % classes, default), uniform, random, or labels (one per seed '
    'or one for all; -1 is the null class). Default with --image: -1.')
_STEPS_UNCOND = flags.DEFINE_integer('steps_uncond', 1000, 'Steps for view 0: the schedule '
                                     'length (1000) runs DDPM, fewer run DDIM.')
_STEPS_COND = flags.DEFINE_integer('steps_cond', 50, 'DDIM steps for every further view.')
_ETA_UNCOND = flags.DEFINE_float('eta_uncond', 0.0, 'DDIM eta of view 0 when it runs DDIM (the '
                                  "authors' 0; 1, stochastic, draws briefly trained networks' "
                                  'views without speckle).', lower_bound=0.0)
_ETA_COND = flags.DEFINE_float('eta_cond', 0.0, "DDIM eta of every further view (the authors' 0).",
                               lower_bound=0.0)
_CLIP = flags.DEFINE_bool('clip_denoised', False, 'Clip the predicted x_0 to [-1, 1] in every '
                          "step (ADM's default; the authors sample without it). Helps networks "
                          'trained briefly, such as the shipped synthetic ones.')
_ERODE = flags.DEFINE_integer('erode_rgb', None, "Radius (pixels) of the conditions' RGB erosion; "
                              "default: the authors' 3 px at 128 px scaled to the networks' "
                              'resolution (3 at 128 px as they sample, 1 at 32 px); the discontinuity '
                              'tolerances scale likewise (chain.for_resolution).', lower_bound=1)
_REPLACE_RGB = flags.DEFINE_float('replace_rgb', 0.1, 'x_0 edit: colour of the shown pixels := '
                                   'this blend of the condition in every DDIM step but the last, '
                                   'unless --replace_rgb_last '
                                   "(the authors' 0.1; 1.0 replaces it, for briefly trained "
                                   'networks).', lower_bound=0.0, upper_bound=1.0)
_REPLACE_RGB_LAST = flags.DEFINE_bool('replace_rgb_last', False, 'The colour replacement on the '
                                      "final DDIM step too (the authors skip it there; the demo "
                                      'sets it for the shipped networks).')
_REPLACE_DEPTH = flags.DEFINE_float('replace_depth', 0.2, 'x_0 edit: depth of the shown pixels '
                                     ":= this blend of the condition (the authors' 0.2).",
                                     lower_bound=0.0, upper_bound=1.0)
_GUIDANCE = flags.DEFINE_float('guidance', 3.0, 'Classifier-free guidance w: (1 + w) eps_c - w '
                               'eps_null (the authors: 3 for pictures, 0.5 for metrics).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 8, 'Scenes per chain call (rounded up to a '
                                   'multiple of the device count).')
_OUT = flags.DEFINE_string('out', None, 'Output folder.')
_IMAGE = flags.DEFINE_string('image', None, 'Image-to-3D: a photo to use as view 0.')
_DEPTH = flags.DEFINE_string('depth', None, "The photo's relative inverse depth, an .npz in the "
                             "authors' format (what ivid-jax estimate-depth writes).")
_DEPTH_MODEL = flags.DEFINE_string(
    'depth_model', 'Intel/dpt-beit-large-512', 'Depth backend when --image comes without '
    "--depth (a transformers model; pip install 'ivid-jax[depth]'), or tiny-random.")


def _bar(total: int, desc: str):
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, desc=desc, unit='view', leave=False)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'sample takes no positional arguments, got {argv[1:]}')
  if dry_run_flags.DRY_RUN.value:
    if not (_UNCOND.value and _COND.value):
      raise app.UsageError('sample --dry_run needs --uncond and --cond (config or model files)')
    from ivid_jax.sampling import dry_run  # pylint: disable=g-import-not-at-top
    dry_run.main(_UNCOND.value, _COND.value, viewset=_VIEWSET.value,
                 batch_size=_BATCH_SIZE.value, json_path=dry_run_flags.JSON.value)
    return
  if not _OUT.value:
    raise app.UsageError('sample needs --out=DIR')
  from ivid_jax.data.errors import BadExampleError  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import chain  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import photo  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import sampler  # pylint: disable=g-import-not-at-top
  from ivid_jax import atomic  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import scene_io  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import viewsets  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  try:
    name, _ = viewsets.parse(_VIEWSET.value)
    seeds = sampler.parse_int_list(_SEEDS.value)
    uncond = None if _IMAGE.value else _UNCOND.value
    if uncond is None and not _IMAGE.value:
      raise ValueError('sample needs --uncond=MODEL_FILE (or --image=PHOTO for image-to-3D)')
    cond = _COND.value
    if cond is None and (name != 'uncond' or _IMAGE.value):
      raise ValueError(f'the {_VIEWSET.value} viewset needs --cond=MODEL_FILE')
    nets = sampler.load_networks(uncond, cond if (name != 'uncond' or _IMAGE.value) else None,
                                 guidance=_GUIDANCE.value)
    first_views = None
    classes = _CLASSES.value
    if _IMAGE.value:
      view0 = photo.first_view(_IMAGE.value, nets.image_size, depth_path=_DEPTH.value,
                               depth_model=_DEPTH_MODEL.value)
      first_views = [view0] * len(seeds)
      if classes is None and nets.num_classes is not None:
        classes = '-1' if nets.has_null_class else 'mod'
    extra = {} if _ERODE.value is None else {'erode_rgb': _ERODE.value}
    settings = chain.for_resolution(nets.image_size, steps_uncond=_STEPS_UNCOND.value,
                                    steps_cond=_STEPS_COND.value, clip_denoised=_CLIP.value,
                                    eta_uncond=_ETA_UNCOND.value, eta=_ETA_COND.value,
                                    replace_rgb=_REPLACE_RGB.value,
                                    replace_rgb_last=_REPLACE_RGB_LAST.value,
                                    replace_depth=_REPLACE_DEPTH.value, **extra)
    paths = scene_io.make_dirs(_OUT.value)
    record = {'uncond': nets.sources.get('uncond'), 'cond': nets.sources.get('cond'),
              'viewset': _VIEWSET.value, 'seeds': seeds, 'classes': classes,
              'image': _IMAGE.value, 'depth': _DEPTH.value, 'guidance': _GUIDANCE.value,
              'settings': settings._asdict(), 'devices': jax.device_count()}
    atomic.write_atomic(os.path.join(_OUT.value, 'run.json'),
                        lambda f: f.write(json.dumps(record, indent=1).encode()))
    start, done = time.time(), 0
    import numpy as np  # pylint: disable=g-import-not-at-top
    batches = sampler.generate(
        nets, seeds, viewset=_VIEWSET.value, classes=classes, batch_size=_BATCH_SIZE.value,
        first_views=None if first_views is None else np.stack(first_views), settings=settings,
        progress=True)
    num_views = viewsets.make(_VIEWSET.value, num_scenes=1).num_views if name != 'random' else 2
    per_batch = sampler.effective_batch_size(_BATCH_SIZE.value)
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
  except (ValueError, FileNotFoundError, BadExampleError) as e:
    raise app.UsageError(str(e)) from e
  print(f'scenes: {paths["scenes"]}')
