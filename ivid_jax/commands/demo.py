"""ivid-jax demo: 3D scenes from the shipped models, free-view videos, meshes and their scores.

  ivid-jax demo                                   # at most 5 minutes on 2 CPU cores
  ivid-jax demo --classes=boxes,room --seed=7 --out=outputs/demo7
  ivid-jax demo --uncond=uncond.msgpack --cond=cond.msgpack   # your own synthetic models
  ivid-jax demo --orbit_views=0                   # without the 360-degree orbit scene

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

demo.md / demo.json hold the table it prints. A --seed gives the same scenes
every time (scene i is sampler seed --seed + i, as `ivid-jax sample --seeds`).
"""

from __future__ import annotations

from absl import app
from absl import flags

_OUT = flags.DEFINE_string('out', 'outputs/demo', 'Output folder.')
_UNCOND = flags.DEFINE_string('uncond', None, 'Model file of the unconditional network (default: '
                              'the shipped data/models/synthetic_uncond.msgpack).')
_COND = flags.DEFINE_string('cond', None, 'Model file of the conditional network (default: the '
                            'shipped data/models/synthetic_cond.msgpack).')
_CLASSES = flags.DEFINE_list('classes', ['spheres', 'tabletop', 'room'],
                             'One scene per entry: synthetic_rgbd class names (spheres, boxes, '
                             'mixed, tabletop, room) or labels; repeat a class for more scenes.')
_SEED = flags.DEFINE_integer('seed', 0, 'Scene i is drawn with sampler seed --seed + i.')
_STEPS_UNCOND = flags.DEFINE_integer('steps_uncond', 50, 'DDIM steps of view 0 (1000: DDPM).')
_STEPS_COND = flags.DEFINE_integer('steps_cond', 20, 'DDIM steps of each further view (the '
                                   'authors: 50).')
_ETA_UNCOND = flags.DEFINE_float('eta_uncond', 1.0, 'DDIM eta of view 0: 1 draws like DDPM at '
                                  "DDIM's cost; 0 (the authors') gives the shipped, briefly "
                                  'trained networks speckled views.', lower_bound=0.0)
_ETA_COND = flags.DEFINE_float('eta_cond', 1.0, 'DDIM eta of each further view (the authors: 0).',
                               lower_bound=0.0)
_GUIDANCE = flags.DEFINE_float('guidance', 3.0, 'Classifier-free guidance w.')
_CLIP = flags.DEFINE_bool('clip_denoised', True, 'Clip the predicted x_0 to [-1, 1] in every '
                          'step: the shipped networks are briefly trained and overshoot without '
                          "it (--noclip_denoised: the authors' unclipped sampling).")
_ERODE = flags.DEFINE_integer('erode_rgb', None, "Radius (pixels) of the conditions' RGB erosion; "
                              "default: the authors' 3 px at 128 px scaled to the networks' "
                              'resolution (1 at 32 px).', lower_bound=1)
_REPLACE_RGB = flags.DEFINE_float('replace_rgb', 1.0, 'x_0 edit: colour of the shown pixels := '
                                   'this blend of the condition in every DDIM step (the last one '
                                   'as --replace_rgb_last says) '
                                   "(the authors: 0.1; 1.0 keeps the shipped, briefly trained "
                                   'G_c consistent with the earlier views).', lower_bound=0.0,
                                   upper_bound=1.0)
_REPLACE_RGB_LAST = flags.DEFINE_bool('replace_rgb_last', True, 'The colour replacement on the '
                                      'final DDIM step too, so the shown pixels are the earlier '
                                      "views' aggregate itself (--noreplace_rgb_last: the "
                                      "authors, who skip it there).")
_REPLACE_DEPTH = flags.DEFINE_float('replace_depth', 1.0, 'x_0 edit: depth of the shown pixels '
                                     ':= this blend of the condition in every DDIM step (the '
                                     'authors: 0.2).', lower_bound=0.0, upper_bound=1.0)
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
_METRICS = flags.DEFINE_list('metrics', ['reprojection', 'tsed', 'flatness'], '3D consistency '
                             'metrics (TSED needs OpenCV: pip install \'ivid-jax[eval]\').')
_EXPORT = flags.DEFINE_list('export', ['ply', 'glb'], 'Meshes to export: ply, glb, points.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'demo takes no positional arguments, got {argv[1:]}')
  from ivid_jax.demos import scenes  # pylint: disable=g-import-not-at-top

  options = scenes.Options(
      classes=tuple(_CLASSES.value), seed=_SEED.value, steps_uncond=_STEPS_UNCOND.value,
      steps_cond=_STEPS_COND.value, eta_uncond=_ETA_UNCOND.value, eta_cond=_ETA_COND.value,
      guidance=_GUIDANCE.value,
      clip_denoised=_CLIP.value, erode_rgb=_ERODE.value, replace_rgb=_REPLACE_RGB.value,
      replace_rgb_last=_REPLACE_RGB_LAST.value, replace_depth=_REPLACE_DEPTH.value,
      frames=_FRAMES.value,
      render_mode=_MODE.value, video_scale=_VIDEO_SCALE.value, grid_scale=_GRID_SCALE.value,
      orbit_views=_ORBIT_VIEWS.value, orbit_class=_ORBIT_CLASS.value,
      heldout=None if _HELDOUT.value < 0 else _HELDOUT.value, ceilings=_CEILINGS.value,
      metrics=tuple(_METRICS.value), export=tuple(_EXPORT.value))
  bad = set(options.export) - {'ply', 'glb', 'points'}
  if bad:
    raise app.UsageError(f'--export: unknown formats {sorted(bad)}; use ply, glb, points')
  try:
    result = scenes.run_demo(_OUT.value, uncond=_UNCOND.value, cond=_COND.value,
                             options=options)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e
  print()
  print(result.summary())
