"""ivid-jax render: free-view videos, images and meshes of generated scenes.

  ivid-jax render --scene_dir=DIR [--traj=swing] [--frames=60] [--mode=exact|preview]
  ivid-jax render --scene_dir=DIR --traj=random          # the fusion metric's images
  ivid-jax render --scene_dir=DIR --export=ply,glb,points --traj=none

Reads DIR/scenes/scene_*.npz (written by `ivid-jax sample`; the authors' own
scene files work too) and renders every scene with the fusion renderer:
--mode=exact is the authors' (all views meshed and drawn at 5x supersampling,
accumulated with their per-fragment weights; on a CPU by a C++ XLA kernel
built at first use, --kernel), --mode=preview a fast point splatting
approximation. Trajectories: swing (their video path, 60 frames),
orbit (a full turn), random (one camera per scene, yaw ~ clip(0.3 N, +-0.6),
pitch ~ clip(0.15 N, +-0.15), written to results/<scene>.png: the
IVID-fusion evaluation images), none (only --export).

Writes videos/<scene>.mp4 and <scene>_depth.mp4 (needs an ffmpeg: pip install
'ivid-jax[video]', or one on the PATH) and the same as .gif, and with
--export a mesh fused from all views (<scene>.ply, <scene>.glb) and a point
cloud (<scene>_points.ply) in exports/. Rendering a trajectory that leaves
the scene's views (e.g. a one-view `uncond` scene along the swing) is an
error unless --allow_holes: the frames would be mostly holes.
"""

from __future__ import annotations

import os
import time
import zlib

from absl import app
from absl import flags

_SCENE_DIR = flags.DEFINE_string('scene_dir', None, 'Output folder of `ivid-jax sample` (or a '
                                 'folder of scene_*.npz files).')
_OUT = flags.DEFINE_string('output_dir', None, 'Where videos/, results/ and exports/ go (default: '
                           '--scene_dir).')
_TRAJ = flags.DEFINE_enum('traj', 'swing', ['swing', 'orbit', 'random', 'none'],
                          'Camera trajectory.')
_FRAMES = flags.DEFINE_integer('frames', 60, 'Frames of swing / orbit.')
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


def check_coverage(view_mvs, frame_mvs, max_gap: float, name: str) -> None:
  """ValueError when some frame's camera is farther than max_gap radians from every view's."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ivid_jax.geometry import cameras  # pylint: disable=g-import-not-at-top
  unit = lambda c: c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-12)
  views = unit(np.asarray(cameras.camera_center(view_mvs)))
  frames = unit(np.asarray(cameras.camera_center(frame_mvs)))
  gap = np.arccos(np.clip(frames @ views.T, -1.0, 1.0)).min(1)
  worst = int(np.argmax(gap))
  if gap[worst] > max_gap:
    raise ValueError(
        f'{name}: frame {worst} of the trajectory is {gap[worst]:.2f} rad from the nearest of '
        f'the scene\'s {len(views)} view(s) (limit --max_gap={max_gap}); most of it would be '
        'holes. Sample the scene with views around the trajectory (e.g. --viewset=3x9), render '
        'a trajectory inside its views, or pass --allow_holes.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'render takes no positional arguments, got {argv[1:]}')
  if not _SCENE_DIR.value:
    raise app.UsageError('render needs --scene_dir=DIR')
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  from ivid_jax.geometry import raster_kernel  # pylint: disable=g-import-not-at-top
  from ivid_jax.rendering import export  # pylint: disable=g-import-not-at-top
  from ivid_jax.rendering import fusion  # pylint: disable=g-import-not-at-top
  from ivid_jax.rendering import trajectories  # pylint: disable=g-import-not-at-top
  from ivid_jax.sampling import scene_io  # pylint: disable=g-import-not-at-top

  bad_formats = set(_EXPORT.value) - {'ply', 'glb', 'points'}
  if bad_formats:
    raise app.UsageError(f'--export: unknown formats {sorted(bad_formats)}; use ply, glb, points')
  if _TRAJ.value == 'none' and not _EXPORT.value:
    raise app.UsageError('--traj=none renders nothing: give --export=ply,glb,points')
  out = _OUT.value or _SCENE_DIR.value
  try:
    files = scene_io.list_scenes(_SCENE_DIR.value)
    if not files:
      raise ValueError(f'{_SCENE_DIR.value}: no scene_*.npz files (in it or its scenes/ folder)')
    scenes = [scene_io.read_scene(f) for f in files]
    sizes = {s.views.shape[1:] for s in scenes}
    if len(sizes) > 1:
      raise ValueError(f'{_SCENE_DIR.value}: scenes of different resolutions {sorted(sizes)}')
    for name, scene in zip(files, scenes):
      if scene.num_views < 2 and _TRAJ.value != 'none' and not _ALLOW_HOLES.value:
        raise ValueError(f'{name}: the scene has a single view ({scene.viewset}); free-view '
                         'rendering needs the views around the trajectory: sample it with '
                         '--viewset=3x9 (or pass --allow_holes)')
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e
  print(f'found {len(scenes)} scene(s) in {_SCENE_DIR.value}')
  kernel = 'jnp'
  if _MODE.value == 'exact' and _TRAJ.value != 'none':
    try:
      kernel = fusion.resolve_kernel(_KERNEL.value)
    except raster_kernel.KernelUnavailable as e:
      raise app.UsageError(str(e)) from e
    print(f'exact renderer: {"the XLA:CPU kernel" if kernel == "cpu" else "jnp"}')
  start = time.time()
  for path, scene in tqdm.tqdm(list(zip(files, scenes)), desc='scenes', unit='scene'):
    stem = os.path.basename(path)[:-len('.npz')]
    if _TRAJ.value != 'none':
      # The authors' files carry no seed: derive one from the name, stably across runs.
      seed = scene.seed if scene.seed >= 0 else zlib.crc32(stem.encode())
      yaw, pitch = trajectories.make(_TRAJ.value, _FRAMES.value, seed)
      mvs = trajectories.modelviews(yaw, pitch)
      if not _ALLOW_HOLES.value:
        try:
          check_coverage(scene.modelviews, mvs, _MAX_GAP.value, path)
        except ValueError as e:
          raise app.UsageError(str(e)) from e
      color, depth = jax.device_get(fusion.render_scene(
          scene.views, scene.modelviews, mvs, fov=scene.fov, near=scene.near, far=scene.far,
          mode=_MODE.value, kernel=kernel))
      rgb = np.round(np.asarray(color) * 255.0).astype(np.uint8)
      if _TRAJ.value == 'random':
        scene_io.write_png(os.path.join(out, 'results', f'{stem}.png'), rgb[0])
      else:
        videos = os.path.join(out, 'videos')
        depth_rgb = export.depth_frames(depth)
        for fmt in _VIDEO.value:
          write = export.write_mp4 if fmt == 'mp4' else export.write_gif
          write(os.path.join(videos, f'{stem}.{fmt}'), rgb, _FPS.value)
          write(os.path.join(videos, f'{stem}_depth.{fmt}'), depth_rgb, _FPS.value)
    if _EXPORT.value:
      export.export_scene(scene, os.path.join(out, 'exports', stem), formats=_EXPORT.value)
  print(f'rendered {len(scenes)} scene(s) in {time.time() - start:.1f} s -> {out}')
