"""ivid-jax render: free-view videos, images and meshes of generated scenes.

  ivid-jax render --scenes=DIR [--traj=swing] [--frames=60] [--mode=exact|preview]
  ivid-jax render --scenes=DIR --traj=random --out=DIR/fusion   # the fusion metric's images
  ivid-jax render --scenes=DIR --export=ply,glb,points --traj=none

Reads DIR/scenes/scene_*.npz (written by `ivid-jax sample`; the authors' own
scene files work too) and renders every scene with the fusion renderer:
--mode=exact is the authors' (all views meshed and drawn at 5x supersampling,
accumulated with their per-fragment weights; on a CPU by a C++ XLA kernel
built at first use, --kernel), --mode=preview a fast point splatting
approximation. Trajectories: swing (their video path, 60 frames),
orbit (a full turn), random (one camera per scene, yaw ~ clip(0.3 N, +-0.6),
pitch ~ clip(0.15 N, +-0.15), written to results/<scene>.png: the
IVID-fusion evaluation images), none (only --export).

Writes under --out (default outputs/render; refused if it holds files, unless
--overwrite) videos/<scene>.mp4 and <scene>_depth.mp4 (needs an ffmpeg: pip install
'ivid-jax[video]', or one on the PATH) and the same as .gif, and with
--export a mesh fused from all views (<scene>.ply, <scene>.glb) and a point
cloud (<scene>_points.ply) in exports/. Rendering a trajectory that leaves
the scene's views (e.g. a one-view `uncond` scene along the swing) is an
error unless --allow_holes: the frames would be mostly holes. The rendering lives
in `ivid_jax.rendering.scene_videos`.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags

from ivid_jax.commands import outputs

_SCENES = flags.DEFINE_string('scenes', None, 'Output folder of `ivid-jax sample` (or a folder '
                              'of scene_*.npz files).')
_OUT = flags.DEFINE_string('out', outputs.default_out('render'), 'Where videos/, results/ and '
                           'exports/ go (refused if it holds files, unless --overwrite).')
flags.declare_key_flag('overwrite')
_TRAJ = flags.DEFINE_enum('traj', 'swing', ['swing', 'orbit', 'random', 'none'],
                          'Camera trajectory.')
_FRAMES = flags.DEFINE_integer('frames', 60, 'Frames of swing / orbit.', lower_bound=1)
_MODE = flags.DEFINE_enum('mode', 'exact', ['exact', 'preview'], 'Renderer.')
_KERNEL = flags.DEFINE_enum('kernel', 'auto', ['auto', 'jnp', 'cpu'], "How --mode=exact runs: "
                            "'cpu' a C++ XLA:CPU kernel built at first use (several times "
                            "faster on CPUs), 'jnp' the portable path (GPU, TPU), 'auto' the "
                            'kernel on the CPU backend when a C++ compiler builds it, else jnp.')
_FPS = flags.DEFINE_float('fps', 30.0, 'Video frame rate.')
_VIDEO = flags.DEFINE_list('video', ['mp4', 'gif'], 'Video formats: mp4, gif.')
_EXPORT = flags.DEFINE_list('export', [], 'Also export: ply (mesh), glb (mesh), points (PLY).')
_ALLOW_HOLES = flags.DEFINE_bool('allow_holes', False, 'Render trajectories that leave the '
                                 "scene's views anyway.")
_MAX_GAP = flags.DEFINE_float('max_gap', 0.25, 'Largest angle (radians) from a frame camera to '
                              'the nearest view camera before a render counts as leaving the views.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'render takes no positional arguments, got {argv[1:]}')
  if not _SCENES.value:
    raise app.UsageError('render needs --scenes=DIR')
  bad_formats = set(_EXPORT.value) - {'ply', 'glb', 'points'}
  if bad_formats:
    raise app.UsageError(f'--export: unknown formats {sorted(bad_formats)}; use ply, glb, points')
  bad_video = set(_VIDEO.value) - {'mp4', 'gif'}
  if bad_video:
    raise app.UsageError(f'--video: unknown formats {sorted(bad_video)}; use mp4, gif')
  if _TRAJ.value == 'none' and not _EXPORT.value:
    raise app.UsageError('--traj=none renders nothing: give --export=ply,glb,points')
  import tqdm  # pylint: disable=g-import-not-at-top
  from ivid_jax.rendering import fusion  # pylint: disable=g-import-not-at-top
  from ivid_jax.rendering import scene_videos  # pylint: disable=g-import-not-at-top

  out = outputs.check_out(_OUT.value)
  video, note = scene_videos.video_formats(_VIDEO.value) if _TRAJ.value != 'none' else ([], None)
  if note:
    print(f'Note: {note}')
  scenes = scene_videos.read_scenes(_SCENES.value, trajectory=_TRAJ.value,
                                    allow_holes=_ALLOW_HOLES.value)
  print(f'found {len(scenes)} scene(s) in {_SCENES.value}')
  kernel = 'jnp'
  if _MODE.value == 'exact' and _TRAJ.value != 'none':
    kernel = fusion.resolve_kernel(_KERNEL.value)
    print(f'exact renderer: {"the XLA:CPU kernel" if kernel == "cpu" else "jnp"}')
  start = time.time()
  for path, scene in tqdm.tqdm(scenes, desc='scenes', unit='scene'):
    scene_videos.render_scene_files(
        path, scene, out, trajectory=_TRAJ.value, frames=_FRAMES.value, mode=_MODE.value,
        kernel=kernel, fps=_FPS.value, video=video, formats=_EXPORT.value,
        allow_holes=_ALLOW_HOLES.value, max_gap=_MAX_GAP.value)
  print(f'rendered {len(scenes)} scene(s) in {time.time() - start:.1f} s -> {out}')
