"""Free-view videos, evaluation images and meshes of scene files: what `ivid-jax render` runs.

  scenes = scene_videos.read_scenes('outputs/sample', trajectory='swing')
  for path, scene in scenes:
    scene_videos.render_scene_files(path, scene, 'outputs/render', trajectory='swing')
"""

from __future__ import annotations

import os
import zlib
from typing import Sequence

import jax
import numpy as np

from ivid_jax.geometry import cameras
from ivid_jax.rendering import export
from ivid_jax.rendering import fusion
from ivid_jax.rendering import trajectories
from ivid_jax.sampling import scene_io

EXPORT_FORMATS = ('ply', 'glb', 'points')


def check_coverage(view_mvs, frame_mvs, max_gap: float, name: str) -> None:
  """ValueError when some frame's camera is farther than max_gap radians from every view's.

  Args:
    view_mvs: float [V, 4, 4] the scene's view cameras (modelviews).
    frame_mvs: float [F, 4, 4] the trajectory's cameras.
    max_gap: radians, the largest angle between camera directions (from the origin) allowed.
    name: the scene, for the message.
  """
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


def video_formats(requested: Sequence[str]) -> tuple[list[str], str | None]:
  """The video formats this install can write, and a one-line note on any left out.

  MP4 needs an ffmpeg (`export.ffmpeg_exe`); without one it is left out when GIF is also
  asked for (the GIF holds the same frames).

  Raises:
    RuntimeError: MP4 alone was asked for and there is no ffmpeg.
  """
  formats = list(requested)
  if 'mp4' not in formats or export.ffmpeg_exe() is not None:
    return formats, None
  hint = "pip install 'ivid-jax[video]' or put an ffmpeg on the PATH"
  formats.remove('mp4')
  if not formats:
    raise RuntimeError(f'--video=mp4 needs an ffmpeg ({hint}), or use --video=gif')
  return formats, f'MP4 videos skipped: no ffmpeg ({hint}); the GIFs hold the same frames.'


def read_scenes(scene_dir: str, *, trajectory: str = 'swing', allow_holes: bool = False
                ) -> list[tuple[str, scene_io.Scene]]:
  """(path, Scene) of every scene_*.npz in scene_dir (or its scenes/), checked for rendering.

  Raises:
    ValueError: no scenes, scenes of different resolutions, or a one-view scene with a
      trajectory (unless allow_holes).
  """
  files = scene_io.list_scenes(scene_dir)
  if not files:
    raise ValueError(f'{scene_dir}: no scene_*.npz files (in it or its scenes/ folder)')
  scenes = [scene_io.read_scene(f) for f in files]
  sizes = {s.views.shape[1:] for s in scenes}
  if len(sizes) > 1:
    raise ValueError(f'{scene_dir}: scenes of different resolutions {sorted(sizes)}')
  for name, scene in zip(files, scenes):
    if scene.num_views < 2 and trajectory != 'none' and not allow_holes:
      raise ValueError(f'{name}: the scene has a single view ({scene.viewset}); free-view '
                       'rendering needs the views around the trajectory: sample it with '
                       '--viewset=3x9 (or pass --allow_holes)')
  return list(zip(files, scenes))


def render_scene_files(path: str, scene: scene_io.Scene, out: str, *, trajectory: str = 'swing',
                       frames: int = 60, mode: str = 'exact', kernel: str = 'jnp',
                       fps: float = 30.0, video: Sequence[str] = ('mp4', 'gif'),
                       formats: Sequence[str] = (), allow_holes: bool = False,
                       max_gap: float = 0.25) -> list[str]:
  """Renders one scene file along `trajectory` and exports its meshes; the paths written.

  trajectory 'random' writes out/results/<scene>.png (one camera: the fusion metric's image),
  'none' nothing; the others out/videos/<scene>.<fmt> and <scene>_depth.<fmt>. `formats`
  (EXPORT_FORMATS) go to out/exports/.
  """
  stem = os.path.basename(path)[:-len('.npz')]
  written = []
  if trajectory != 'none':
    # The authors' files carry no seed: derive one from the name, stably across runs.
    seed = scene.seed if scene.seed >= 0 else zlib.crc32(stem.encode())
    yaw, pitch = trajectories.make(trajectory, frames, seed)
    mvs = trajectories.modelviews(yaw, pitch)
    if not allow_holes:
      check_coverage(scene.modelviews, mvs, max_gap, path)
    color, depth = jax.device_get(fusion.render_scene(
        scene.views, scene.modelviews, mvs, fov=scene.fov, near=scene.near, far=scene.far,
        mode=mode, kernel=kernel))
    rgb = np.round(np.asarray(color) * 255.0).astype(np.uint8)
    if trajectory == 'random':
      written.append(scene_io.write_png(os.path.join(out, 'results', f'{stem}.png'), rgb[0]))
    else:
      videos = os.path.join(out, 'videos')
      depth_rgb = export.depth_frames(depth)
      for fmt in video:
        write = export.write_mp4 if fmt == 'mp4' else export.write_gif
        written.append(write(os.path.join(videos, f'{stem}.{fmt}'), rgb, fps))
        written.append(write(os.path.join(videos, f'{stem}_depth.{fmt}'), depth_rgb, fps))
  if formats:
    written += export.export_scene(scene, os.path.join(out, 'exports', stem), formats=formats)
  return written
