"""ivid-jax demo: 3D scenes from the shipped models, free-view videos, meshes and their scores.

  ivid-jax demo                                   # at most 5 minutes on 2 CPU cores
  ivid-jax demo --classes=boxes,room --seeds=7-8 --out=outputs/demo7
  ivid-jax demo --uncond=uncond.msgpack --cond=cond.msgpack   # your own synthetic models
  ivid-jax demo --orbit_views=0 --overwrite       # without the 360-degree orbit scene

No download and no accelerator needed. The package ships two small networks
trained on the procedural synthetic_rgbd scenes (32 px; data/models/): the
unconditional one draws view 0 of each scene, the conditional one each of
the 26 further views of the authors' 3x9 set, conditioned on the earlier
views warped by their depth into its camera. For every scene the demo writes
(under --out):
  grids/rgb_*.png, grids/depth_*.png  the 27 views, 3 x 9 as the cameras sit (each view
                                      enlarged 4x, --grid_scale)
  conds/                              the warped conditions each view was drawn from
  videos/*.gif (and .mp4 with an ffmpeg)  a free-view swing by the fusion renderer,
                                      colour | depth
  exports/*.ply, *.glb                a mesh fused from all views
  scenes/scene_*.npz                  the scene (ivid-jax render and eval-3d read it)
and scores every scene's 3D consistency (reprojection PSNR between neighbouring
views, TSED with OpenCV, flatness) beside the same metrics on ground-truth
synthetic scenes of the same classes at the same cameras.

Large-angle generation: one more scene (--orbit_views, --orbit_class) goes
a full 360-degree turn around in 27 views at pitch 0, each conditioned on the
earlier ones; orbit/ holds its grids and scene file, videos/*_turntable.gif
its turntable video (the fusion renderer along a full turn).

Image-to-3D: view 0 of a held-out scene (--heldout, from the synthetic_rgbd
test split, which no training scene comes from) is given instead of sampled;
image_to_3d/side_by_side_*.png shows its true views beside the generated ones,
with PSNR on the pixels the condition showed and on the inpainted ones.

demo.md / demo.json hold the table it prints. One scene per seed (--seeds, as
`ivid-jax sample --seeds`: a seed gives the same scene every time), of the class
--classes gives it (one per seed or one for all; given without --seeds, seeds 0, 1, ...
one per class; --seeds without --classes repeats the preset's classes). The image-to-3D
and orbit scenes take the next two seeds after the largest.

Sampler flags default to the `demo` preset, the settings for the shipped, briefly trained
networks; --preset=authors gives the authors' settings, and any explicit flag overrides
the preset (--help lists both). The demo samples all its scenes in one batch.
"""

from __future__ import annotations

from absl import app
from absl import flags

from ivid_jax.commands import outputs
from ivid_jax.commands import sampler_flags

flags.adopt_module_key_flags(sampler_flags)
flags.declare_key_flag('overwrite')

_OUT = flags.DEFINE_string('out', outputs.default_out('demo'), 'Output folder (refused if it '
                           'holds files, unless --overwrite).')
_UNCOND = flags.DEFINE_string('uncond', None, 'Model file of the unconditional network (default: '
                              'the shipped data/models/synthetic_uncond.msgpack).')
_COND = flags.DEFINE_string('cond', None, 'Model file of the conditional network (default: the '
                            'shipped data/models/synthetic_cond.msgpack).')
_FRAMES = flags.DEFINE_integer('frames', 60, 'Frames of each swing video.')
_MODE = flags.DEFINE_enum('mode', 'exact', ['exact', 'preview'], "Renderer: the authors' fusion "
                          'renderer, or fast point splatting.')
_VIDEO_SCALE = flags.DEFINE_integer('video_scale', 4, 'Video frames enlarged this many times '
                                    '(whole pixels), for viewing.', lower_bound=1)
_GRID_SCALE = flags.DEFINE_integer('grid_scale', 4, 'Every view of the grids (grids/, conds/, '
                                   'the image-to-3D side by side) enlarged this many times by '
                                   'whole pixels (nearest neighbour), for viewing: a 32 px view '
                                   'drawn at 128 px; 1: as drawn.', lower_bound=1)
_ORBIT_VIEWS = flags.DEFINE_integer('orbit_views', 27, 'Views of the orbit scene: large-angle '
                                    'generation, a full 360-degree turn at pitch 0 in this many '
                                    'views, each conditioned on the earlier ones (ivid-jax sample '
                                    '--viewset=orbit:N), shown as a grid and a turntable video '
                                    'under orbit/ and videos/. 27 (the 3x9 set\'s count) samples '
                                    'it in the same batch as the 3x9 scenes; another count '
                                    'compiles a chain of its own. 0: no orbit scene.',
                                    lower_bound=0)
_ORBIT_CLASS = flags.DEFINE_string('orbit_class', None, 'Class of the orbit scene (a name or a '
                                   'label); default: spheres (for synthetic_rgbd networks, else '
                                   'the first of --classes).')
_HELDOUT = flags.DEFINE_integer('heldout', 2, 'Test scene of synthetic_rgbd whose view 0 goes in '
                                'for image-to-3D (class = index % 5); -1 skips image-to-3D.')
_CEILINGS = flags.DEFINE_bool('ceilings', True, 'Score ground-truth scenes of the same classes at '
                              'the same cameras.')
_METRICS = flags.DEFINE_list('metrics', None, '3D consistency metrics: reprojection, tsed, '
                             'flatness (default: all three, tsed only when OpenCV imports: '
                             "pip install 'ivid-jax[eval]').")
_EXPORT = flags.DEFINE_list('export', ['ply', 'glb'], 'Meshes to export: ply, glb, points.')


def _seeds_and_classes(opts: dict) -> tuple[tuple[int, ...] | None, tuple | str]:
  """--seeds and --classes (or the preset's) -> Options.seeds and Options.classes."""
  from ivid_jax.sampling import sampler  # pylint: disable=g-import-not-at-top
  given = sampler_flags.explicit()
  classes = sampler_flags.class_spec(opts['classes'])
  if 'seeds' not in given and 'classes' in given and not isinstance(classes, str):
    return None, tuple(classes)  # seeds 0, 1, ...: one scene per class
  seeds = tuple(sampler.parse_int_list(opts['seeds']))
  if not seeds:
    raise ValueError(f'--seeds={opts["seeds"]!r} gives no seed')
  if isinstance(classes, str):
    return seeds, classes
  if 'classes' not in given and len(classes) not in (1, len(seeds)):
    classes = [classes[i % len(classes)] for i in range(len(seeds))]  # the preset's, repeated
  if len(classes) == 1:
    classes = classes * len(seeds)
  if len(classes) != len(seeds):
    raise ValueError(f'--classes: {len(classes)} classes for {len(seeds)} seeds; give one per '
                     f'seed, one for all, or one of {", ".join(sampler_flags.CLASS_MODES)}')
  return seeds, tuple(classes)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'demo takes no positional arguments, got {argv[1:]}')
  bad = set(_EXPORT.value) - {'ply', 'glb', 'points'}
  if bad:
    raise app.UsageError(f'--export: unknown formats {sorted(bad)}; use ply, glb, points')
  if 'batch_size' in sampler_flags.explicit():
    raise app.UsageError('--batch_size: the demo samples all its scenes in one batch')
  opts = sampler_flags.values('demo')
  try:
    seeds, classes = _seeds_and_classes(opts)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  from ivid_jax.demos import scenes  # pylint: disable=g-import-not-at-top
  from ivid_jax.evaluation import consistency  # pylint: disable=g-import-not-at-top

  # run_demo leaves TSED out, with a note, when OpenCV does not import.
  metrics = tuple(_METRICS.value) if _METRICS.value else consistency.METRICS
  options = scenes.Options(
      classes=classes, seeds=seeds, steps_uncond=opts['steps_uncond'],
      steps_cond=opts['steps_cond'], eta_uncond=opts['eta_uncond'], eta_cond=opts['eta_cond'],
      guidance=opts['guidance'], clip_denoised=opts['clip_denoised'],
      erode_rgb=opts['erode_rgb'], replace_rgb=opts['replace_rgb'],
      replace_rgb_last=opts['replace_rgb_last'], replace_depth=opts['replace_depth'],
      frames=_FRAMES.value, render_mode=_MODE.value, video_scale=_VIDEO_SCALE.value,
      grid_scale=_GRID_SCALE.value, orbit_views=_ORBIT_VIEWS.value,
      orbit_class=_ORBIT_CLASS.value, heldout=None if _HELDOUT.value < 0 else _HELDOUT.value,
      ceilings=_CEILINGS.value, metrics=metrics, export=tuple(_EXPORT.value))
  out = outputs.check_out(_OUT.value)
  result = scenes.run_demo(out, uncond=_UNCOND.value, cond=_COND.value, options=options)
  print()
  print(result.summary())
