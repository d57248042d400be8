"""The main demo: 3D scenes from the shipped synthetic models, rendered, exported and scored.

  result = scenes.run_demo('outputs/demo', options=scenes.Options(classes=('boxes', 'room')))
  print(result.summary())   # the table, and where everything is

It composes the project's own pieces, as `ivid-jax sample`, `render` and
`eval-3d` do: the sampler (`sampling.sampler.generate`) draws view 0 of each
scene with the unconditional network and the 26 further views of the 3x9 set
with the conditional one; the scenes are written in the authors' layout
(`sampling.scene_io`), rendered along the authors' swing trajectory by the
fusion renderer, exported as a fused mesh (PLY, GLB) and scored with the 3D
consistency metrics (`evaluation.consistency`) beside the same metrics on
ground-truth `synthetic_rgbd` scenes at the same cameras (their ceilings).

Image-to-3D: view 0 of a held-out scene (the synthetic_rgbd test split, which
no training scene is drawn from) is given instead of sampled, and the
generated views stand beside that scene's true views, with PSNR on the
pixels the condition showed and on the ones the model inpainted. View 0 is
given with its true geometry in the sampler's depth encoding (near/far
0.6/5, `evaluation.ground_truth.sampler_views`), as the ground-truth scores
condition on it, so the true views at the 3x9 cameras are exact targets.

Large-angle generation: one orbit scene (`Options.orbit_views`, default 27;
0: none) goes a full 360-degree turn around in views at pitch 0, each
conditioned on the earlier ones (`ivid-jax sample --viewset=orbit:27`), and is
rendered as a turntable video (the fusion renderer along a full turn); it is
written under orbit/, its video and meshes beside the others.

The chain compiles once: view 0 of the generated scenes is drawn first (the
'uncond' view set, the same keys as a whole chain), then one batch runs the
conditional views of every scene, the image-to-3D and the orbit ones included,
from their given first views (the chain's cameras are data: the 3x9 set and a
27-view orbit share its shapes; an orbit of another size runs a chain of its
own). A seed gives the same scene as `ivid-jax sample` with the same classes,
view set and steps (bit for bit: the same keys, view 0 carried over exactly).

Grids are written with every view enlarged `Options.grid_scale` times by whole
pixels (nearest neighbour, the 2 px separators kept), as the videos are
(`video_scale`): a 32 px view is drawn at 128 px.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import importlib.resources
import importlib.util
import os
import time
from typing import Any, Sequence

import jax
import numpy as np
import tqdm
from PIL import Image

from ivid_jax import images
from ivid_jax.data import synthetic
from ivid_jax.evaluation import consistency
from ivid_jax.evaluation import eval_3d
from ivid_jax.evaluation import ground_truth
from ivid_jax.evaluation import report
from ivid_jax.evaluation import scenes as scenes_lib
from ivid_jax.geometry import cameras
from ivid_jax.models import model_file
from ivid_jax.rendering import export
from ivid_jax.rendering import fusion
from ivid_jax.rendering import trajectories
from ivid_jax.sampling import chain
from ivid_jax.sampling import sampler
from ivid_jax.sampling import scene_io
from ivid_jax.sampling import viewsets

SHIPPED = {'uncond': 'models/synthetic_uncond.msgpack', 'cond': 'models/synthetic_cond.msgpack'}
DEFAULT_CLASSES = ('spheres', 'tabletop', 'room')
DEFAULT_HELDOUT = 2  # test scene 2: class 2 ('mixed'), a class the default scenes leave out
IMAGE_TO_3D = 'image_to_3d'  # its own output folder, so sample/render/eval-3d see only the rest
ORBIT = 'orbit'  # the orbit scene's folder, for the same reason
# The orbit scene's class for synthetic_rgbd networks. Chosen by looking at orbit:27 scenes of
# the shipped networks with the demo's settings (6 seeds of spheres, 4 of mixed and room, 2 of
# boxes and tabletop): in every spheres scene the same large spheres stay in place around the
# whole turn and are there again at its end, drifting into clutter at the back (the views
# farthest from view 0); mixed scenes hold together less often; rooms hold together but show
# one bare wall most of the way round; tabletops an almost empty table top; boxes fall apart
# into coloured slabs. The neighbours' reprojection PSNR does not tell them apart (39-49 dB
# in every class).
ORBIT_CLASS = 'spheres'
NUM_3X9 = viewsets.make('3x9', num_scenes=1).num_views  # 27


@dataclasses.dataclass(frozen=True)
class Options:
  """Everything a demo run is a function of (defaults: the 5-minute CPU run)."""
  # Class names or labels, one per scene (or one for all `seeds`), or a mode of
  # `sampler.choose_classes` ('mod', 'uniform', 'random'; needs `seeds`).
  classes: tuple[Any, ...] | str = DEFAULT_CLASSES
  seed: int = 0  # without `seeds`: scene i is sampler seed `seed + i`
  # The scenes' sampler seeds (None: seed, seed + 1, ... one per class); the image-to-3D and
  # orbit scenes take the two seeds after the largest.
  seeds: tuple[int, ...] | None = None
  steps_uncond: int = 50  # DDIM steps of view 0
  steps_cond: int = 20  # DDIM steps of each further view
  # DDIM eta of view 0 and of the further views. The authors sample with 0 (deterministic);
  # networks as briefly trained as the shipped ones then draw speckled views, and 1 (DDIM's
  # stochastic end, like DDPM) draws clean ones at the same cost (data/models/MODEL_CARD.md, "How they must be sampled").
  eta_uncond: float = 1.0
  eta_cond: float = 1.0
  guidance: float = 3.0  # classifier-free guidance w (the authors' value for pictures)
  # x_0 clipped to [-1, 1] in every DDIM step: the shipped networks are briefly trained and
  # overshoot at large t (the authors sample unclipped; False for their networks).
  clip_denoised: bool = True
  # RGB erosion of the conditions (pixels); None: the authors' 3 px at 128 px scaled to the
  # networks' resolution (1 at 32 px). Their discontinuity tolerances are scaled likewise
  # (`chain.for_resolution`).
  erode_rgb: int | None = None
  # x_0 edits inside the shown pixels: colour and depth := this blend of the condition in every
  # DDIM step (the colour on the last one as `replace_rgb_last` says). The authors' 0.1 / 0.2
  # assume a G_c that copies its condition by itself; the shipped one, briefly trained, barely
  # does, and full replacement (1.0) keeps the views consistent where they overlap (measured:
  # docs/generation.md, "Presets").
  replace_rgb: float = 1.0
  replace_depth: float = 1.0
  # The colour replacement on the final step too (the authors skip it): the shown pixels are then
  # the earlier views' aggregate itself, not the young G_c's redrawing of it (docs/generation.md, "Presets").
  replace_rgb_last: bool = True
  frames: int = 60  # frames of the swing video and of the orbit scene's turntable
  render_mode: str = 'exact'  # 'exact' (the authors' fusion renderer) or 'preview'
  video_scale: int = 4  # nearest-neighbour enlargement of the video frames, for viewing
  grid_scale: int = 4  # the same for every view of the grids (PNG), for viewing; 1: as drawn
  # Views of the orbit scene: a full 360-degree turn at pitch 0 (`viewsets` 'orbit:N'), drawn
  # beside the 3x9 scenes; 0: none. 27, the 3x9 set's count, puts its chain in the same batch
  # as theirs (one compilation: the chain's shapes are [B, V, ...], its cameras are data);
  # another count runs a chain of its own, compiled once more (20-25 s on 2 CPU cores).
  orbit_views: int = 27
  # Its class; None: spheres for synthetic_rgbd networks (ORBIT_CLASS), else the first of
  # `classes`.
  orbit_class: Any = None
  fps: float = 30.0
  heldout: int | None = DEFAULT_HELDOUT  # test scene for image-to-3D; None: skip it
  ceilings: bool = True  # score ground-truth scenes of the same classes at the same cameras
  metrics: tuple[str, ...] = consistency.METRICS  # TSED is left out without OpenCV
  export: tuple[str, ...] = ('ply', 'glb')


@dataclasses.dataclass
class SceneFiles:
  """One generated scene and what the demo wrote for it (paths; None when not written)."""
  name: str
  seed: int
  label: int
  class_name: str
  scene: str
  grid_rgb: str
  grid_depth: str
  gif: str | None = None
  mp4: str | None = None
  meshes: list[str] = dataclasses.field(default_factory=list)
  metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ImageTo3D:
  """The image-to-3D scene, its side-by-side grid and its scores against the true views.

  Attributes:
    files: the generated scene (SceneFiles, scored for consistency like the others).
    source: where view 0 came from.
    side_by_side: PNG: true views | generated views (RGB rows, then depth), 3 x 9 each.
    view0_max_abs: max |generated view 0 - given view 0| (0: the given view is kept).
    scores: psnr/ssim of the novel views (1..26) against the true ones on all pixels,
      on those the condition showed and on the inpainted ones; depth abs rel; per-view PSNR.
  """
  files: SceneFiles
  source: str
  side_by_side: str | None
  view0_max_abs: float
  scores: dict[str, Any]


@dataclasses.dataclass
class DemoResult:
  """What `run_demo` did: files, metrics, stage wall times (seconds), notes for the user.

  `orbit` is the orbit scene (None without one): its grids and scene file under orbit/,
  its turntable video in `orbit.gif` / `orbit.mp4`, scored like the others.
  """
  out_dir: str
  options: Options
  scenes: list[SceneFiles]
  image_to_3d: ImageTo3D | None
  ground_truth: list[dict[str, Any]]
  times: dict[str, float]
  notes: list[str]
  report: tuple[str, str] = ()
  orbit: SceneFiles | None = None

  def mean(self, which: str = 'generated') -> dict[str, dict[str, float]]:
    """Mean metrics over the generated scenes or the ground-truth ones."""
    rows = [s.metrics for s in self.scenes] if which == 'generated' else [
        g['metrics'] for g in self.ground_truth]
    return _mean(rows)

  def table(self) -> str:
    return _table(self)

  def summary(self) -> str:
    return _summary(self)


# ---------------------------------------------------------------------------------------------
# Inputs.

def shipped_model(kind: str) -> str:
  """Path of the model file shipped in the package (data/models/), for 'uncond' or 'cond'.

  Raises:
    FileNotFoundError naming the file when the package was installed without it.
  """
  if kind not in SHIPPED:
    raise ValueError(f'kind must be one of {sorted(SHIPPED)}, got {kind!r}')
  path = importlib.resources.files('ivid_jax.bundled_data').joinpath(SHIPPED[kind])
  if not path.is_file():
    raise FileNotFoundError(
        f'{path}: the shipped {kind} model file is missing (data/{SHIPPED[kind]} of the '
        f'repository, installed as package data); pass --{kind}=MODEL_FILE, e.g. one written by '
        f'`ivid-jax export`')
  return str(path)


def load_networks(uncond: str | None = None, cond: str | None = None,
                  guidance: float = 3.0) -> sampler.Networks:
  """The sampler's networks from model files (default: the shipped ones), kinds checked."""
  return sampler.load_networks(uncond or shipped_model('uncond'), cond or shipped_model('cond'),
                               guidance=guidance)


def parse_classes(classes: Sequence[Any] | str, num_classes: int | None) -> list[int]:
  """Class names of synthetic_rgbd (`synthetic.CLASS_NAMES`) or labels -> labels."""
  if isinstance(classes, str):
    classes = [c.strip() for c in classes.split(',') if c.strip()]
  if not classes:
    raise ValueError('no classes given: one scene is generated per class (names or labels)')
  labels = []
  for c in classes:
    if isinstance(c, str) and not c.lstrip('-').isdigit():
      labels.append(synthetic.class_label(c, num_classes))
    else:
      labels.append(int(c))
  if num_classes is not None:
    bad = [c for c in labels if not 0 <= c < num_classes]
    if bad:
      raise ValueError(f'class labels {bad} are outside 0..{num_classes - 1}')
  return labels


def scene_seeds_and_labels(opts: Options, num_classes: int | None,
                           has_null_class: bool = False) -> tuple[list[int], list[int]]:
  """The 3x9 scenes' seeds and class labels (`Options.seeds`, `Options.classes`).

  Networks without classes get label 0 per scene (unused by the sampler).
  """
  if isinstance(opts.classes, str) and opts.classes in ('mod', 'uniform', 'random'):
    if opts.seeds is None:
      raise ValueError(f'classes {opts.classes!r} needs the seeds (Options.seeds)')
    seeds = list(opts.seeds)
    labels = sampler.choose_classes(seeds, opts.classes, num_classes, allow_null=has_null_class)
    return seeds, [0] * len(seeds) if labels is None else [int(c) for c in labels]
  labels = parse_classes(opts.classes, num_classes)
  if opts.seeds is None:
    return [opts.seed + i for i in range(len(labels))], labels
  seeds = list(opts.seeds)
  if len(labels) == 1:
    labels = labels * len(seeds)
  if len(labels) != len(seeds):
    raise ValueError(f'{len(labels)} classes for {len(seeds)} seeds: give one per seed or one '
                     'for all')
  return seeds, labels


def class_name(label: int, num_classes: int | None) -> str:
  if num_classes == synthetic.NUM_CLASSES and 0 <= label < num_classes:
    return synthetic.CLASS_NAMES[label]
  return '-' if label < 0 else str(label)


def training_textures(path: str) -> str:
  """'solid' or 'mixed': the synthetic_rgbd textures a model file was trained on.

  Read from the training config `ivid-jax export` stores; files without it
  (converted or random weights) get 'solid', the synthetic configs' data.
  """
  config = model_file.load(path).meta.get('config') or {}
  name = str((config.get('input') or {}).get('tfds_config', 'r_solid'))
  return 'solid' if name.endswith('_solid') else 'mixed'


def heldout_scenes(resolution: int, indices: Sequence[int], textures: str = 'solid'
                   ) -> dict[int, scenes_lib.Scene]:
  """Test-split synthetic_rgbd scenes by index, rendered as its builder does (one call, no build).

  Scene i of a split has class i % 5 (`synthetic_rgbd`); the test split's key
  stream is disjoint from the train split's, so no training scene is among them.
  Scenes are rendered in aligned blocks of one scene per class, so every
  request reuses one compilation (the scene sampler's takes most of the time).
  """
  block = synthetic.NUM_CLASSES
  out = {}
  for start in sorted({i - i % block for i in indices}):
    got = ground_truth.synthetic_scenes(resolution, 'test', start, block, textures=textures)
    out.update({start + k: s for k, s in enumerate(got) if start + k in indices})
  return out


def start_heldout_scenes(resolution: int, indices: Sequence[int], textures: str = 'solid'
                         ) -> concurrent.futures.Future:
  """`heldout_scenes` on a background thread; its result is the future's.

  Compiling the scene sampler is single-threaded and takes 15-30 s on a small CPU:
  it runs beside view 0's compilation and sampling. The modules it needs are
  imported here first, on the calling thread: TFDS imports its builders inside
  etils' `lazy_imports`, which swaps the process-wide `__import__` while it runs,
  so an import JAX makes on the main thread at that moment (while tracing) gets a
  lazy stand-in and fails (seen in a demo run here: "No module named
  'jax._src.hijax.HiType'", raised from `jax.random.key`).
  """
  importlib.import_module('ivid_jax.data.synthetic_rgbd')  # and with it tensorflow_datasets
  pool = concurrent.futures.ThreadPoolExecutor(1)
  future = pool.submit(heldout_scenes, resolution, indices, textures)
  pool.shutdown(wait=False)
  return future


# ---------------------------------------------------------------------------------------------
# Stages.

def chain_settings(opts: Options, image_size: int) -> chain.Settings:
  """The sampler settings of a demo run at `image_size` px (`chain.for_resolution`)."""
  extra = {} if opts.erode_rgb is None else {'erode_rgb': opts.erode_rgb}
  return chain.for_resolution(image_size, steps_uncond=opts.steps_uncond,
                              steps_cond=opts.steps_cond, clip_denoised=opts.clip_denoised,
                              eta_uncond=opts.eta_uncond, eta=opts.eta_cond,
                              replace_rgb=opts.replace_rgb, replace_depth=opts.replace_depth,
                              replace_rgb_last=opts.replace_rgb_last,
                              **extra)


def _bar(total: int, desc: str, enabled: bool):
  return tqdm.tqdm(total=total, desc=desc, unit='view', leave=False, disable=not enabled)


def _sample(nets: sampler.Networks, seeds: Sequence[int], labels: Sequence[int] | None,
            viewset: str | Sequence[str], first_views: np.ndarray | None,
            settings: chain.Settings, desc: str, progress: bool
            ) -> list[tuple[scene_io.Scene, Any]]:
  """One chain call for all `seeds`, with a progress bar over its views.

  Args:
    viewset: one view set for all scenes, or one per scene; every one of the same number
      of views (the chain's carry is [B, V, ...]; the cameras are data, so the 3x9 set and
      'orbit:27' share a batch and its compilation).
    first_views: None (view 0 from G_u) or float32 [B, N, N, 4].

  Returns:
    (Scene, its conditions) per seed: the keys, classes and cameras of `sampler.generate`
    (`sampler.run_batch` is what it calls), so scene i is `ivid-jax sample`'s of its seed.
  """
  specs = [viewset] * len(seeds) if isinstance(viewset, str) else list(viewset)
  sets = [viewsets.make(spec, sampler.scene_keys([seed])) for spec, seed in zip(specs, seeds)]
  counts = {vs.num_views for vs in sets}
  if len(counts) != 1:
    raise ValueError(f'one chain call takes view sets of one size, got {sorted(counts)} views')
  (num_views,) = counts
  mvs = np.concatenate([np.asarray(cameras.orbit_camera(vs.yaw, vs.pitch)) for vs in sets])
  classes = None if labels is None else np.asarray(labels, np.int32)
  bar = _bar(num_views, desc, progress)
  seen = [0]

  def advance(view):
    if view + 1 > seen[0]:  # every device reports every view: count each once
      bar.update(view + 1 - seen[0])
      seen[0] = view + 1

  with chain.progress_to(advance):
    out = sampler.run_batch(nets, list(seeds), classes, mvs, first_views, settings, progress)
  bar.close()
  scenes = []
  for b, vs in enumerate(sets):
    one = lambda a, b=b: a[b:b + 1]
    batch = sampler.SceneBatch(
        seeds=np.asarray(seeds[b:b + 1]), classes=None if classes is None else one(classes),
        viewset=vs, modelviews=one(mvs), views=one(out.views),
        conditions=jax.tree.map(one, out.conditions))
    scenes.extend(scene_io.scenes_from_batch(batch, settings))
  return scenes


def orbit_display(num_views: int) -> tuple[tuple[int, ...], ...]:
  """Grid rows of an orbit scene: the turn in generation order (yaw increasing) in 3 rows."""
  rows = 3 if num_views >= 9 else 1
  per_row = -(-num_views // rows)
  return tuple(tuple(range(i, min(i + per_row, num_views)))
               for i in range(0, num_views, per_row))


def enlarge(images: np.ndarray, scale: int) -> np.ndarray:
  """Images [..., H, W, C] drawn `scale` times larger by whole pixels (nearest neighbour)."""
  return np.asarray(images).repeat(scale, -3).repeat(scale, -2)


def enlarge_grid(image: np.ndarray, tile: int, scale: int,
                 padding: int = images.GRID_PADDING) -> np.ndarray:
  """An `images.grid` picture [H, W, C] of `tile` px tiles with every tile `scale` times larger.

  Nearest neighbour (each pixel becomes a scale x scale block of itself); the separators
  keep their `padding` px, so they stay thin lines between the larger tiles.

  Raises:
    ValueError when the picture is not a grid of `tile` px tiles `padding` px apart.
  """
  def rows(size):
    count, rest = divmod(size - padding, tile + padding)
    if rest or count < 1:
      raise ValueError(f'a picture {size} px across is no grid of {tile} px tiles {padding} px '
                       'apart')
    cell = np.concatenate([np.arange(tile).repeat(scale), tile + np.arange(padding)])
    return np.concatenate([np.arange(padding)] + [padding + k * (tile + padding) + cell
                                                  for k in range(count)])
  image = np.asarray(image)
  return image[rows(image.shape[0])][:, rows(image.shape[1])]


def _enlarge_png(path: str, tile: int, scale: int) -> None:
  with Image.open(path) as im:
    image = np.asarray(im)
  scene_io.write_png(path, enlarge_grid(image, tile, scale))


def _write_scene(paths: dict[str, str], scene: scene_io.Scene, conditions,
                 num_classes: int | None, grid_scale: int = 1) -> SceneFiles:
  """The scene in the authors' layout (`scene_io.write_outputs`), its grids enlarged."""
  written = scene_io.write_outputs(paths, scene, conditions)
  if grid_scale > 1:
    for path in written:
      if path.endswith('.png') and os.path.dirname(path) in (paths['grids'], paths['conds']):
        _enlarge_png(path, scene.views.shape[1], grid_scale)
  sfx = scene_io.suffix(scene.seed, scene.label)
  return SceneFiles(
      name=sfx, seed=scene.seed, label=scene.label,
      class_name=class_name(scene.label, num_classes),
      scene=os.path.join(paths['scenes'], f'scene_{sfx}.npz'),
      grid_rgb=os.path.join(paths['grids'], f'rgb_{sfx}.png'),
      grid_depth=os.path.join(paths['grids'], f'depth_{sfx}.png'))


def render_video(files: SceneFiles, folder: str, opts: Options,
                 trajectory: str = 'swing') -> list[str]:
  """A video of a scene file (colour | depth side by side): GIF, and MP4 with an ffmpeg.

  trajectory: 'swing' (the authors' path, videos/<name>.gif) or 'orbit' (a full turn at
  pitch 0, the turntable of an orbit scene: videos/<name>_turntable.gif); `opts.frames`
  frames either way, so both share the renderer's compilation.
  """
  scene = scene_io.read_scene(files.scene)
  yaw, pitch = trajectories.make(trajectory, opts.frames)
  color, depth = jax.device_get(fusion.render_scene(
      scene.views, scene.modelviews, trajectories.modelviews(yaw, pitch), fov=scene.fov,
      near=scene.near, far=scene.far, mode=opts.render_mode))
  frames = np.concatenate([np.round(np.asarray(color) * 255.0).astype(np.uint8),
                           export.depth_frames(depth)], axis=2)
  # Enlarged by whole pixels only: a 32 px frame stays the renderer's 32 px image.
  frames = enlarge(frames, opts.video_scale)
  stem = os.path.join(folder, files.name + ('_turntable' if trajectory == 'orbit' else ''))
  files.gif = export.write_gif(stem + '.gif', frames, opts.fps)
  files.mp4 = export.write_mp4(stem + '.mp4', frames, opts.fps) if export.ffmpeg_exe() else None
  return [p for p in (files.gif, files.mp4) if p]


def side_by_side(true_views: np.ndarray, views: np.ndarray,
                 display: Sequence[Sequence[int]]) -> np.ndarray:
  """Grid of true | generated views, colour rows then depth rows, float [H, W, 3].

  Args:
    true_views, views: float [V, N, N, 4], RGB and z-buffer depth (both near/far 0.6/5).
    display: the view set's grid rows.
  """
  v = len(views)
  tiles = np.concatenate([true_views[..., :3], views[..., :3],
                          images.colorize_depth(true_views[..., 3]),
                          images.colorize_depth(views[..., 3])])
  rows = [list(r) + [-1] + [k + v for k in r] for r in display]
  rows += [[k + 2 * v if k >= 0 else -1 for k in r] for r in rows]
  return images.grid(np.clip(tiles, 0.0, 1.0), rows, fill=1.0)


def score_against_truth(views: np.ndarray, conditions, truth: scenes_lib.Scene
                        ) -> dict[str, Any]:
  """Novel views (1..V-1) of an image-to-3D scene against the true ones.

  Args:
    views: float [V, N, N, 4] generated views (view 0 given), z with near/far 0.6/5.
    conditions: aggregate.Condition [V - 1, ...] the views' conditions.
    truth: the true scene at the same cameras.

  Returns:
    `ground_truth.novel_view_scores` (the novel-view protocol's numbers), the depth abs-rel
    error over all pixels (depth_abs_rel) and the colour PSNR of each view (psnr_per_view).
  """
  pred = np.asarray(views[1:], np.float32)
  true = truth.rgb[1:].astype(np.float32) / 255.0
  shown = np.asarray(conditions.mask_rgb, bool)[..., 0]
  known = np.asarray(conditions.mask, bool)[..., 0]
  out = ground_truth.novel_view_scores(pred, true, truth.depth[1:], shown, known)
  out['depth_abs_rel'] = ground_truth.depth_error(pred[..., 3], truth.depth[1:],
                                                  np.ones_like(shown))
  mse = ((np.clip(pred[..., :3], 0.0, 1.0) - true) ** 2).mean((1, 2, 3))
  out['psnr_per_view'] = [float(x) for x in np.minimum(-10 * np.log10(np.maximum(mse, 1e-10)),
                                                       ground_truth.PSNR_CAP)]
  return out


def _score(paths: Sequence[str], metrics: tuple[str, ...]) -> list[dict]:
  scores = consistency.score_scenes([scenes_lib.read_scene(p) for p in paths], metrics=metrics)
  return [{k: v for k, v in s.items() if k != 'name'} for s in scores['per_scene']]


def _mean(rows: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
  """Each number averaged over rows, NaNs (undefined, e.g. no overlapping pair) left out."""
  def nanmean(values):
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float('nan')
  if not rows:
    return {}
  return {m: {k: nanmean([r[m][k] for r in rows]) for k in rows[0][m]} for m in rows[0]}


def _image_to_3d(scene: scene_io.Scene, conds, out_dir: str, given: np.ndarray,
                 num_classes: int | None, truth: scenes_lib.Scene | None,
                 source: str, grid_scale: int = 1) -> ImageTo3D:
  """Writes an image-to-3D scene to out_dir/image_to_3d/ and scores it against the truth."""
  folder = os.path.join(out_dir, IMAGE_TO_3D)
  files = _write_scene(scene_io.make_dirs(folder), scene, conds, num_classes, grid_scale)
  grid_path, scores = None, {}
  if truth is not None:
    grid = side_by_side(ground_truth.sampler_views(truth), scene.views, scene.display)
    grid_path = scene_io.write_png(
        os.path.join(folder, f'side_by_side_{files.name}.png'),
        enlarge_grid(images.to_uint8(grid, 'truncate'), scene.views.shape[1], grid_scale))
    scores = score_against_truth(scene.views, conds, truth)
  return ImageTo3D(files=files, source=source, side_by_side=grid_path,
                   view0_max_abs=float(np.abs(scene.views[0] - given).max()), scores=scores)


def image_to_3d(nets: sampler.Networks, first_view: np.ndarray, out_dir: str, *,
                source: str = 'a given view', seed: int = 0, label: int | None = None,
                options: Options = Options(), progress: bool = True) -> ImageTo3D:
  """A 3x9 scene from a given view 0 (e.g. `sampling.photo.first_view` of a photo), rendered.

  Args:
    nets: from `load_networks`.
    first_view: float32 [N, N, 4] RGB and z-buffer depth in [0, 1] (a photo's: the
      data's encoding, as `photo.first_view` makes it; the chain lifts it with 0.6/5).
    out_dir: the scene goes to out_dir/image_to_3d/, its video to out_dir/videos/.
    source: what the view is, for the record.
    seed: the sampler seed of the further views.
    label: class of the conditional network (default: the null class if it has one, else 0).
    options: steps, frames, renderer, exports.
  """
  if label is None and nets.num_classes is not None:
    label = -1 if nets.has_null_class else 0
  settings = chain_settings(options, nets.image_size)
  given = np.asarray(first_view, np.float32)
  ((scene, conds),) = _sample(nets, [seed], None if nets.num_classes is None else [label],
                              '3x9', given[None], settings, 'views 1-26', progress)
  result = _image_to_3d(scene, conds, out_dir, given, nets.num_classes, None, source,
                        options.grid_scale)
  render_video(result.files, os.path.join(out_dir, 'videos'), options)
  if options.export:
    result.files.meshes = export.export_scene(
        scene_io.read_scene(result.files.scene),
        os.path.join(out_dir, 'exports', result.files.name), formats=options.export)
  return result


# ---------------------------------------------------------------------------------------------
# The demo.

@dataclasses.dataclass
class _Run:
  """One demo run's inputs and its stage clock (what every stage of `run_demo` reads)."""
  out_dir: str
  opts: Options
  nets: sampler.Networks
  settings: chain.Settings
  seeds: list[int]  # the 3x9 scenes'
  labels: list[int]
  progress: bool
  log: Any
  times: dict[str, float] = dataclasses.field(default_factory=dict)
  clock: float = dataclasses.field(default_factory=time.time)

  def stage(self, name: str) -> None:
    """Records the wall time since the last stage under `name` and logs it."""
    now = time.time()
    self.times[name] = now - self.clock
    self.clock = now
    self.log(f'  {name}: {self.times[name]:.1f} s')

  @property
  def with_classes(self) -> bool:
    return self.nets.num_classes is not None


@dataclasses.dataclass
class _Orbit:
  """The orbit scene's plan: views (0: none), seed, label, and whether it shares the batch."""
  views: int = 0
  seed: int = 0
  label: int = 0

  @property
  def shared(self) -> bool:  # its views ride in the 3x9 scenes' batch (module docstring)
    return self.views == NUM_3X9

  @property
  def spec(self) -> str:
    return f'orbit:{self.views}'


def _checked_metrics(opts: Options) -> tuple[tuple[str, ...], list[str]]:
  """The metrics the run computes and the notes on what it left out."""
  if opts.render_mode not in fusion.MODES:
    raise ValueError(f'render mode must be one of {fusion.MODES}, got {opts.render_mode!r}')
  unknown = set(opts.metrics) - set(consistency.METRICS)
  if unknown:
    raise ValueError(f'unknown metrics {sorted(unknown)}; choose from {consistency.METRICS}')
  metrics = tuple(opts.metrics)
  if 'tsed' in metrics and importlib.util.find_spec('cv2') is None:
    return tuple(m for m in metrics if m != 'tsed'), [eval_3d.TSED_NOTE]
  return metrics, []


def _plan_orbit(run: _Run) -> _Orbit:
  opts = run.opts
  if not opts.orbit_views:
    return _Orbit()
  # After the image-to-3D scene's seed (max + 1), whether it is drawn or not.
  return _Orbit(views=viewsets.make(f'orbit:{opts.orbit_views}', num_scenes=1).num_views,
                seed=max(run.seeds) + 2,
                label=orbit_class(opts.orbit_class, run.labels, run.nets.num_classes))


def _log_sampling(run: _Run, orbit: _Orbit) -> None:
  opts = run.opts
  first_sampler = ('DDPM' if opts.steps_uncond >= run.nets.uncond.schedule.num_steps else
                   f'DDIM {opts.steps_uncond}, eta {opts.eta_uncond:g}')
  beside = [s for s, on in (('the image-to-3D scene', opts.heldout is not None),
                            (f'an orbit scene of {orbit.views} views around', orbit.views))
            if on]
  what = [f'{len(run.seeds)} scene(s) of 3x9 views'] + beside
  run.log(f'[3/6] sampling {", ".join(what[:-1])}{" and " if len(what) > 1 else ""}{what[-1]}'
          + f': view 0 with G_u ({first_sampler}), then the further views with G_c (DDIM '
          f'{opts.steps_cond}, eta {opts.eta_cond:g})'
          + (', all in one batch' if orbit.views and orbit.shared else ''))


def _sample_all(run: _Run, orbit: _Orbit, pending
                ) -> tuple[list[tuple[scene_io.Scene, Any]], dict[int, Any], np.ndarray | None]:
  """View 0 of every scene, then their further views: (generated, truth, the given view 0).

  `generated` holds the 3x9 scenes, then the image-to-3D one, then the orbit one.
  """
  opts, nets, labels_of = run.opts, run.nets, lambda x: x if run.with_classes else None
  first_seeds, first_labels = list(run.seeds), list(run.labels)
  if orbit.views:
    first_seeds.append(orbit.seed)
    first_labels.append(orbit.label)
  first = _sample(nets, first_seeds, labels_of(first_labels), 'uncond', None, run.settings,
                  'view 0', run.progress)
  first_views = np.stack([scene.views[0] for scene, _ in first])
  run.stage('view 0 (G_u)')
  truth = {}
  if pending is not None:
    truth = pending.result()
    run.stage('ground truth scenes (the wait for them)')
  n = len(run.seeds)
  all_seeds, all_labels = list(run.seeds), list(run.labels)
  all_first, specs = [first_views[:n]], ['3x9'] * n
  given = None
  if opts.heldout is not None:
    # True geometry in the sampler's encoding (module docstring): the true views are targets.
    given = ground_truth.sampler_views(truth[opts.heldout])[0]
    all_first.append(given[None])
    all_seeds.append(max(run.seeds) + 1)
    # Its true class for synthetic_rgbd networks; others get their null class (a photo's).
    synthetic_nets = nets.num_classes == synthetic.NUM_CLASSES
    all_labels.append(opts.heldout % synthetic.NUM_CLASSES if synthetic_nets else
                      -1 if nets.has_null_class else 0)
    specs.append('3x9')
  if orbit.views and orbit.shared:
    all_first.append(first_views[-1:])
    all_seeds.append(orbit.seed)
    all_labels.append(orbit.label)
    specs.append(orbit.spec)
  generated = _sample(nets, all_seeds, labels_of(all_labels), specs, np.concatenate(all_first),
                      run.settings, 'views 1-26', run.progress)
  run.stage('views 1-26 (G_c)')
  if orbit.views and not orbit.shared:
    generated += _sample(nets, [orbit.seed], labels_of([orbit.label]), orbit.spec,
                         first_views[-1:], run.settings, f'orbit views 1-{orbit.views - 1}',
                         run.progress)
    run.stage(f'orbit views 1-{orbit.views - 1} (G_c, a chain of its own)')
  return generated, truth, given


def _write_all(run: _Run, orbit: _Orbit, generated, truth, given
               ) -> tuple[list[SceneFiles], ImageTo3D | None, SceneFiles | None]:
  """Writes the scenes (the authors' layout; image_to_3d/ and orbit/ beside)."""
  opts, num_classes, n = run.opts, run.nets.num_classes, len(run.seeds)
  paths = scene_io.make_dirs(run.out_dir)
  files = [_write_scene(paths, scene, conds, num_classes, opts.grid_scale)
           for scene, conds in generated[:n]]
  i23d = orbit_files = None
  if opts.heldout is not None:
    scene, conds = generated[n]
    true_scene = truth[opts.heldout]
    i23d = _image_to_3d(scene, conds, run.out_dir, given, num_classes, true_scene,
                        true_scene.name, opts.grid_scale)
  if orbit.views:
    scene, conds = generated[-1]
    scene.display = orbit_display(orbit.views)
    orbit_files = _write_scene(scene_io.make_dirs(os.path.join(run.out_dir, ORBIT)), scene,
                               conds, num_classes, opts.grid_scale)
  return files, i23d, orbit_files


def _render_all(run: _Run, everything: list[SceneFiles], orbit: SceneFiles | None,
                notes: list[str]) -> None:
  opts = run.opts
  run.log(f'[4/6] rendering the swing videos ({opts.frames} frames, {opts.render_mode} renderer)'
          + (' and the orbit scene\'s turntable (a full turn)' if orbit else ''))
  videos = os.path.join(run.out_dir, 'videos')
  for f in tqdm.tqdm(everything, desc='videos', unit='scene', leave=False,
                     disable=not run.progress):
    render_video(f, videos, opts)
  if export.ffmpeg_exe() is None:
    notes.append("MP4 videos skipped: no ffmpeg (pip install 'ivid-jax[video]' or put one on "
                 'the PATH); the GIFs hold the same frames.')
  run.stage('render')
  if orbit:
    render_video(orbit, videos, opts, trajectory='orbit')
    run.stage('turntable video')


def _export_all(run: _Run, everything: list[SceneFiles]) -> None:
  run.log(f'[5/6] exporting fused meshes ({", ".join(run.opts.export)})')
  for f in tqdm.tqdm(everything, desc='meshes', unit='scene', leave=False,
                     disable=not run.progress):
    f.meshes = export.export_scene(scene_io.read_scene(f.scene),
                                   os.path.join(run.out_dir, 'exports', f.name),
                                   formats=run.opts.export)
  run.stage('export')


def _score_all(run: _Run, everything: list[SceneFiles], truth, metrics: tuple[str, ...]
               ) -> list[dict[str, Any]]:
  """Scores every generated scene (into its SceneFiles) and the true ones; the latter's rows."""
  run.log(f'[6/6] 3D consistency ({", ".join(metrics)}) of the generated and the true scenes')
  gt_rows = []
  num_classes = run.nets.num_classes
  if metrics:
    for f, s in zip(everything, _score([f.scene for f in everything], metrics)):
      f.metrics = s
    if run.opts.ceilings and truth:
      gt_labels = sorted(set(run.labels)) if num_classes == synthetic.NUM_CLASSES else []
      gt = [truth[c] for c in gt_labels]
      for c, s, scores in zip(gt_labels, gt, consistency.score_scenes(
          gt, metrics=metrics)['per_scene'] if gt else []):
        gt_rows.append({'name': s.name, 'label': c, 'class_name': class_name(c, num_classes),
                        'metrics': {k: v for k, v in scores.items() if k != 'name'}})
  run.stage('metrics')
  return gt_rows


def run_demo(out_dir: str, *, uncond: str | None = None, cond: str | None = None,
             options: Options = Options(), progress: bool = True, log=print) -> DemoResult:
  """Generates, renders, exports and scores the demo's scenes; see the module docstring.

  Args:
    out_dir: output folder (the authors' layout, plus videos/, exports/, image_to_3d/ and
      demo.json / demo.md).
    uncond, cond: model files (default: the shipped synthetic models).
    options: Options.
    progress: tqdm bars.
    log: where stage lines go (print; None for silence).

  Returns:
    DemoResult.
  """
  log = log or (lambda *a, **k: None)
  opts = options
  metrics, notes = _checked_metrics(opts)
  start = time.time()

  log('[1/6] loading the networks')
  uncond = uncond or shipped_model('uncond')
  cond = cond or shipped_model('cond')
  nets = load_networks(uncond, cond, opts.guidance)
  seeds, labels = scene_seeds_and_labels(opts, nets.num_classes, nets.has_null_class)
  n = nets.image_size
  run = _Run(out_dir=out_dir, opts=opts, nets=nets, settings=chain_settings(opts, n),
             seeds=seeds, labels=labels, progress=progress, log=log, clock=start)
  run.stage('load')

  wanted = ([opts.heldout] if opts.heldout is not None else []) + (
      sorted(set(labels)) if opts.ceilings and nets.num_classes == synthetic.NUM_CLASSES else [])
  pending = None
  if wanted:
    textures = training_textures(uncond)
    log(f'[2/6] ground truth: synthetic_rgbd test scenes {sorted(set(wanted))} at {n} px '
        f'({textures} textures) by the dataset\'s generator, while view 0 is sampled')
    pending = start_heldout_scenes(n, wanted, textures)

  orbit_plan = _plan_orbit(run)
  _log_sampling(run, orbit_plan)
  generated, truth, given = _sample_all(run, orbit_plan, pending)
  files, i23d, orbit = _write_all(run, orbit_plan, generated, truth, given)
  everything = files + ([i23d.files] if i23d else [])
  _render_all(run, everything, orbit, notes)
  everything += [orbit] if orbit else []
  if opts.export:
    _export_all(run, everything)
  gt_rows = _score_all(run, everything, truth, metrics)
  times = run.times
  times['total'] = time.time() - start

  result = DemoResult(out_dir=os.path.abspath(out_dir), options=opts, scenes=files,
                      image_to_3d=i23d, ground_truth=gt_rows, times=times, notes=notes,
                      orbit=orbit)
  record = {'options': dataclasses.asdict(opts), 'networks': nets.sources,
            'scenes': [dataclasses.asdict(f) for f in files],
            'image_to_3d': dataclasses.asdict(i23d) if i23d else None,
            'orbit': dataclasses.asdict(orbit) if orbit else None,
            'ground_truth': gt_rows, 'mean': {'generated': result.mean('generated'),
                                              'ground_truth': result.mean('ground_truth')},
            'times': times, 'notes': notes}
  result.report = report.write(out_dir, 'demo', record, result.table())
  return result


def orbit_class(spec: Any, labels: Sequence[int], num_classes: int | None) -> int:
  """The orbit scene's label: `spec` (a class name or label) if given.

  By default ORBIT_CLASS for synthetic_rgbd networks, else the first 3x9 scene's label.
  """
  if spec is None:
    if num_classes != synthetic.NUM_CLASSES:
      return labels[0]
    spec = ORBIT_CLASS
  (label,) = parse_classes([spec], num_classes)
  return label


# ---------------------------------------------------------------------------------------------
# What it prints.

_COLUMNS = (('reprojection', 'psnr', 'reprojection PSNR'),
            ('reprojection', 'depth_inliers', 'depth within 2%'),
            ('tsed', 'tsed', 'TSED'), ('flatness', 'flatness', 'flatness'))


def _table(result: DemoResult) -> str:
  """Markdown: per-scene consistency beside the ground truth's, and the image-to-3D scores."""
  have = set().union(*[s.metrics for s in result.scenes]) if result.scenes else set()
  columns = [c for c in _COLUMNS if c[0] in have]
  cell = lambda m: [m.get(a, {}).get(b) for a, b, _ in columns]
  rows = [[f'generated {s.name}', s.class_name] + cell(s.metrics) for s in result.scenes]
  if result.image_to_3d and result.image_to_3d.files.metrics:
    f = result.image_to_3d.files
    rows.append([f'image-to-3D {f.name}', f.class_name] + cell(f.metrics))
  if result.orbit and result.orbit.metrics:
    f = result.orbit
    rows.append([f'orbit {f.name} ({result.options.orbit_views} views around)', f.class_name]
                + cell(f.metrics))
  rows += [[f'ground truth {g["name"]}', g['class_name']] + cell(g['metrics'])
           for g in result.ground_truth]
  if len(result.scenes) > 1:
    rows.append(['mean of the generated scenes', ''] + cell(result.mean('generated')))
  if len(result.ground_truth) > 1:
    rows.append(['mean of the ground truth (ceiling)', ''] + cell(result.mean('ground_truth')))
  where = ", the orbit scene's at its own around the full turn" if result.orbit else ''
  out = (f'3D consistency at the 3x9 cameras{where} (each view against its 2 nearest):\n\n'
         + report.markdown_table(['scene', 'class'] + [c[2] for c in columns], rows))
  if result.image_to_3d and result.image_to_3d.scores:
    i = result.image_to_3d
    s = i.scores
    out += (f'\nImage-to-3D from view 0 of {i.source} (views 1-26 against the true views; '
            f'{100 * s["shown_share"]:.0f}% of their pixels were shown by the condition):\n\n'
            + report.markdown_table(
                ['PSNR all', 'PSNR shown', 'PSNR inpainted', 'SSIM all', 'depth abs rel',
                 'view 0 max abs diff'],
                [[s['psnr_all'], s['psnr_shown'], s['psnr_inpainted'], s['ssim_all'],
                  s['depth_abs_rel'], i.view0_max_abs]]))
  times = ', '.join(f'{k} {v:.1f} s' for k, v in result.times.items())
  return out + f'\nWall time: {times}.\n'


def _rel(path: str | None) -> str:
  """A path as the user typed it: relative to the working folder when inside it."""
  if not path:
    return '-'
  rel = os.path.relpath(path)
  return path if rel.startswith('..') else rel


def _summary(result: DemoResult) -> str:
  """The table, then where everything is and what each file shows."""
  scale = result.options.grid_scale
  lines = [result.table(), f'Outputs in {_rel(result.out_dir)}/ (per scene, <name> = '
           'class<c>_seed<s>):',
           '  grids/rgb_<name>.png    the 27 views, 3 x 9 as the cameras sit: yaw +0.6 (left) to '
           '-0.6 (right), pitch -0.15 (top) to +0.15 (bottom)'
           + (f'; every view enlarged {scale}x' if scale > 1 else ''),
           '  grids/depth_<name>.png  their depth (inferno: near is bright)',
           '  conds/                  the condition of each view: the earlier views warped into '
           'its camera (holes black)',
           "  videos/<name>.gif/.mp4  free-view swing along the authors' trajectory, fusion "
           'renderer: colour | depth',
           '  exports/<name>.ply/.glb one mesh fused from all views (MeshLab, Blender, any glTF '
           'viewer)',
           '  scenes/scene_<name>.npz the scene itself (`ivid-jax render` / `eval-3d` read it)']
  for f in result.scenes:
    lines.append(f'  {f.name}: {f.class_name}, seed {f.seed}')
  if result.image_to_3d:
    i = result.image_to_3d
    lines.append(f'  {IMAGE_TO_3D}/            image-to-3D from view 0 of {i.source} '
                 f'({i.files.name}; its video and meshes beside the others)')
    if i.side_by_side:
      lines.append(f'  {_rel(i.side_by_side)}  true views | generated views (colour rows, then '
                   'depth); view 0 is the given one')
  if result.orbit:
    f = result.orbit
    v = result.options.orbit_views
    lines.append(f'  {ORBIT}/                  an orbit scene: {v} views a full turn around '
                 f'({f.name}: {f.class_name}, seed {f.seed}), each conditioned on the earlier ones')
    lines.append(f'  {_rel(f.grid_rgb)}  its views in generation order (yaw 0 to '
                 f'{360 * (v - 1) / v:.0f} degrees, left to right, row by row), their depth '
                 'beside it')
    lines.append(f'  {_rel(f.gif)}  its turntable: a full turn by the fusion renderer, '
                 'colour | depth')
  lines.append('  ' + ' and '.join(_rel(p) for p in result.report) + '  the tables above')
  lines += [f'Note: {n}' for n in result.notes]
  return '\n'.join(lines) + '\n'
