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

The chain compiles once: view 0 of the generated scenes is drawn first (the
'uncond' view set, the same keys as a whole chain), then one batch runs the
conditional views of every scene, the image-to-3D one included, from their
given first views. A seed gives the same scene as `ivid-jax sample` with the
same classes and steps (bit for bit: the same keys, view 0 carried over exactly).
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

from ivid_jax.data import synthetic
from ivid_jax.evaluation import consistency
from ivid_jax.evaluation import ground_truth
from ivid_jax.evaluation import report
from ivid_jax.evaluation import scenes as scenes_lib
from ivid_jax.models import model_file
from ivid_jax.rendering import export
from ivid_jax.rendering import fusion
from ivid_jax.rendering import trajectories
from ivid_jax.sampling import chain
from ivid_jax.sampling import sampler
from ivid_jax.sampling import scene_io

SHIPPED = {'uncond': 'models/synthetic_uncond.msgpack', 'cond': 'models/synthetic_cond.msgpack'}
DEFAULT_CLASSES = ('spheres', 'tabletop', 'room')
DEFAULT_HELDOUT = 2  # test scene 2: class 2 ('mixed'), a class the default scenes leave out
IMAGE_TO_3D = 'image_to_3d'  # its own output folder, so sample/render/eval-3d see only the rest


@dataclasses.dataclass(frozen=True)
class Options:
  """Everything a demo run is a function of (defaults: the 5-minute CPU run)."""
  classes: tuple[Any, ...] = DEFAULT_CLASSES  # class names or labels, one scene each
  seed: int = 0  # scene i is sampler seed `seed + i`; the image-to-3D scene comes last
  steps_uncond: int = 50  # DDIM steps of view 0
  steps_cond: int = 20  # DDIM steps of each further view
  # DDIM eta of view 0 and of the further views. The authors sample with 0 (deterministic);
  # networks as briefly trained as the shipped ones then draw speckled views, and 1 (DDIM's
  # stochastic end, like DDPM) draws clean ones at the same cost (README, Training).
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
  # README Demo).
  replace_rgb: float = 1.0
  replace_depth: float = 1.0
  # The colour replacement on the final step too (the authors skip it): the shown pixels are then
  # the earlier views' aggregate itself, not the young G_c's redrawing of it (README, Demo).
  replace_rgb_last: bool = True
  frames: int = 60  # frames of the swing video
  render_mode: str = 'exact'  # 'exact' (the authors' fusion renderer) or 'preview'
  video_scale: int = 4  # nearest-neighbour enlargement of the video frames, for viewing
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
  """What `run_demo` did: files, metrics, stage wall times (seconds), notes for the user."""
  out_dir: str
  options: Options
  scenes: list[SceneFiles]
  image_to_3d: ImageTo3D | None
  ground_truth: list[dict[str, Any]]
  times: dict[str, float]
  notes: list[str]
  report: tuple[str, str] = ()

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
      if c not in synthetic.CLASS_NAMES:
        raise ValueError(f'unknown class {c!r}; synthetic_rgbd has {synthetic.CLASS_NAMES} '
                         f'(or give labels)')
      if num_classes != synthetic.NUM_CLASSES:
        raise ValueError(f'class names are synthetic_rgbd\'s, but the networks have '
                         f'{num_classes} classes: give labels')
      labels.append(synthetic.CLASS_NAMES.index(c))
    else:
      labels.append(int(c))
  if num_classes is not None:
    bad = [c for c in labels if not 0 <= c < num_classes]
    if bad:
      raise ValueError(f'class labels {bad} are outside 0..{num_classes - 1}')
  return labels


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


def _sample(nets: sampler.Networks, seeds: Sequence[int], labels: list[int] | None, viewset: str,
            first_views: np.ndarray | None, settings: chain.Settings, desc: str,
            progress: bool) -> sampler.SceneBatch:
  """One sampler batch of all `seeds`, with a progress bar over its views."""
  num_views = 1 if viewset == 'uncond' else 27
  bar = _bar(num_views, desc, progress)
  seen = [0]

  def advance(view):
    if view + 1 > seen[0]:  # every device reports every view: count each once
      bar.update(view + 1 - seen[0])
      seen[0] = view + 1

  with chain.progress_to(advance):
    batch = next(sampler.generate(nets, seeds, viewset=viewset, classes=labels,
                                  batch_size=len(seeds), first_views=first_views,
                                  settings=settings, progress=progress))
  bar.close()
  return batch


def _write_scene(paths: dict[str, str], scene: scene_io.Scene, conditions,
                 num_classes: int | None) -> SceneFiles:
  scene_io.write_outputs(paths, scene, conditions)
  sfx = scene_io.suffix(scene.seed, scene.label)
  return SceneFiles(
      name=sfx, seed=scene.seed, label=scene.label,
      class_name=class_name(scene.label, num_classes),
      scene=os.path.join(paths['scenes'], f'scene_{sfx}.npz'),
      grid_rgb=os.path.join(paths['grids'], f'rgb_{sfx}.png'),
      grid_depth=os.path.join(paths['grids'], f'depth_{sfx}.png'))


def render_video(files: SceneFiles, folder: str, opts: Options) -> list[str]:
  """The swing video of a scene file (colour | depth side by side): GIF, and MP4 with an ffmpeg."""
  scene = scene_io.read_scene(files.scene)
  yaw, pitch = trajectories.swing(opts.frames)
  color, depth = jax.device_get(fusion.render_scene(
      scene.views, scene.modelviews, trajectories.modelviews(yaw, pitch), fov=scene.fov,
      near=scene.near, far=scene.far, mode=opts.render_mode))
  frames = np.concatenate([np.round(np.asarray(color) * 255.0).astype(np.uint8),
                           export.depth_frames(depth)], axis=2)
  # Enlarged by whole pixels only: a 32 px frame stays the renderer's 32 px image.
  frames = frames.repeat(opts.video_scale, 1).repeat(opts.video_scale, 2)
  stem = os.path.join(folder, files.name)
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
                          scene_io.colorize_depth(true_views[..., 3]),
                          scene_io.colorize_depth(views[..., 3])])
  rows = [list(r) + [-1] + [k + v for k in r] for r in display]
  rows += [[k + 2 * v if k >= 0 else -1 for k in r] for r in rows]
  return scene_io.grid(np.clip(tiles, 0.0, 1.0), rows, fill=1.0)


def score_against_truth(views: np.ndarray, conditions, truth: scenes_lib.Scene
                        ) -> dict[str, Any]:
  """Novel views (1..V-1) of an image-to-3D scene against the true ones.

  Args:
    views: float [V, N, N, 4] generated views (view 0 given), z with near/far 0.6/5.
    conditions: aggregate.Condition [V - 1, ...] the views' conditions.
    truth: the true scene at the same cameras.
  """
  pred = np.clip(np.asarray(views[1:, ..., :3], np.float32), 0.0, 1.0)
  true = truth.rgb[1:].astype(np.float32) / 255.0
  shown = np.asarray(conditions.mask_rgb, bool)[..., 0]
  out = {}
  for region, mask in (('all', np.ones_like(shown)), ('shown', shown), ('inpainted', ~shown)):
    for k, val in ground_truth.region_scores(pred, true, mask).items():
      if k != 'images':
        out[f'{k}_{region}'] = val
  out['shown_share'] = float(shown.mean())
  out['depth_abs_rel'] = ground_truth.depth_error(views[1:, ..., 3], truth.depth[1:],
                                                  np.ones_like(shown))
  mse = ((pred - true) ** 2).mean((1, 2, 3))
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
                 source: str) -> ImageTo3D:
  """Writes an image-to-3D scene to out_dir/image_to_3d/ and scores it against the truth."""
  folder = os.path.join(out_dir, IMAGE_TO_3D)
  files = _write_scene(scene_io.make_dirs(folder), scene, conds, num_classes)
  grid_path, scores = None, {}
  if truth is not None:
    grid_path = scene_io.write_png(
        os.path.join(folder, f'side_by_side_{files.name}.png'),
        side_by_side(ground_truth.sampler_views(truth), scene.views, scene.display))
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
  batch = _sample(nets, [seed], None if nets.num_classes is None else [label], '3x9',
                  given[None], settings, 'views 1-26', progress)
  ((scene, conds),) = scene_io.scenes_from_batch(batch, settings)
  result = _image_to_3d(scene, conds, out_dir, given, nets.num_classes, None, source)
  render_video(result.files, os.path.join(out_dir, 'videos'), options)
  if options.export:
    result.files.meshes = export.export_scene(
        scene_io.read_scene(result.files.scene),
        os.path.join(out_dir, 'exports', result.files.name), formats=options.export)
  return result


# ---------------------------------------------------------------------------------------------
# The demo.

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
  if opts.render_mode not in fusion.MODES:
    raise ValueError(f'render mode must be one of {fusion.MODES}, got {opts.render_mode!r}')
  unknown = set(opts.metrics) - set(consistency.METRICS)
  if unknown:
    raise ValueError(f'unknown metrics {sorted(unknown)}; choose from {consistency.METRICS}')
  notes, times = [], {}
  metrics = tuple(opts.metrics)
  if 'tsed' in metrics and importlib.util.find_spec('cv2') is None:
    metrics = tuple(m for m in metrics if m != 'tsed')
    notes.append("TSED left out: it needs OpenCV (pip install 'ivid-jax[eval]').")
  start = clock = time.time()

  def stage(name):
    nonlocal clock
    now = time.time()
    times[name] = now - clock
    clock = now
    log(f'  {name}: {times[name]:.1f} s')

  log('[1/6] loading the networks')
  uncond = uncond or shipped_model('uncond')
  cond = cond or shipped_model('cond')
  nets = load_networks(uncond, cond, opts.guidance)
  labels = parse_classes(opts.classes, nets.num_classes)
  n = nets.image_size
  settings = chain_settings(opts, n)
  stage('load')

  wanted = ([opts.heldout] if opts.heldout is not None else []) + (
      sorted(set(labels)) if opts.ceilings and nets.num_classes == synthetic.NUM_CLASSES else [])
  pending = None
  if wanted:
    textures = training_textures(uncond)
    log(f'[2/6] ground truth: synthetic_rgbd test scenes {sorted(set(wanted))} at {n} px '
        f'({textures} textures) by the dataset\'s generator, while view 0 is sampled')
    pending = start_heldout_scenes(n, wanted, textures)

  seeds = [opts.seed + i for i in range(len(labels))]
  first_sampler = ('DDPM' if opts.steps_uncond >= nets.uncond.schedule.num_steps else
                   f'DDIM {opts.steps_uncond}, eta {opts.eta_uncond:g}')
  log(f'[3/6] sampling {len(seeds)} scene(s) of 3x9 views: view 0 with G_u ({first_sampler}), '
      f'then views 1-26 with G_c (DDIM {opts.steps_cond}, eta {opts.eta_cond:g})'
      + (' beside the image-to-3D scene' if opts.heldout is not None else ''))
  with_classes = nets.num_classes is not None
  first = _sample(nets, seeds, labels if with_classes else None, 'uncond', None, settings,
                  'view 0', progress)
  first_views = first.views[:, 0]
  stage('view 0 (G_u)')
  truth = {}
  if pending is not None:
    truth = pending.result()
    stage('ground truth scenes (the wait for them)')
  all_seeds, all_labels = list(seeds), list(labels)
  if opts.heldout is not None:
    # True geometry in the sampler's encoding (module docstring): the true views are targets.
    given = ground_truth.sampler_views(truth[opts.heldout])[0]
    first_views = np.concatenate([first_views, given[None]])
    all_seeds.append(opts.seed + len(labels))
    # Its true class for synthetic_rgbd networks; others get their null class (a photo's).
    synthetic_nets = nets.num_classes == synthetic.NUM_CLASSES
    all_labels.append(opts.heldout % synthetic.NUM_CLASSES if synthetic_nets else
                      -1 if nets.has_null_class else 0)
  batch = _sample(nets, all_seeds, all_labels if with_classes else None, '3x9', first_views,
                  settings, 'views 1-26', progress)
  stage('views 1-26 (G_c)')

  paths = scene_io.make_dirs(out_dir)
  generated = list(scene_io.scenes_from_batch(batch, settings))
  files = [_write_scene(paths, scene, conds, nets.num_classes)
           for scene, conds in generated[:len(seeds)]]
  i23d = None
  if opts.heldout is not None:
    scene, conds = generated[-1]
    true_scene = truth[opts.heldout]
    i23d = _image_to_3d(scene, conds, out_dir, first_views[-1], nets.num_classes, true_scene,
                        true_scene.name)

  log(f'[4/6] rendering the swing videos ({opts.frames} frames, {opts.render_mode} renderer)')
  everything = files + ([i23d.files] if i23d else [])
  for f in tqdm.tqdm(everything, desc='videos', unit='scene', leave=False, disable=not progress):
    render_video(f, os.path.join(out_dir, 'videos'), opts)
  if export.ffmpeg_exe() is None:
    notes.append("MP4 videos skipped: no ffmpeg (pip install 'ivid-jax[video]' or put one on "
                 'the PATH); the GIFs hold the same frames.')
  stage('render')

  if opts.export:
    log(f'[5/6] exporting fused meshes ({", ".join(opts.export)})')
    for f in tqdm.tqdm(everything, desc='meshes', unit='scene', leave=False,
                       disable=not progress):
      scene = scene_io.read_scene(f.scene)
      f.meshes = export.export_scene(scene, os.path.join(out_dir, 'exports', f.name),
                                     formats=opts.export)
    stage('export')

  log(f'[6/6] 3D consistency ({", ".join(metrics)}) of the generated and the true scenes')
  gt_rows = []
  if metrics:
    for f, s in zip(everything, _score([f.scene for f in everything], metrics)):
      f.metrics = s
    if opts.ceilings and truth:
      gt_labels = sorted(set(labels)) if nets.num_classes == synthetic.NUM_CLASSES else []
      gt = [truth[c] for c in gt_labels]
      for c, s, scores in zip(gt_labels, gt, consistency.score_scenes(
          gt, metrics=metrics)['per_scene'] if gt else []):
        gt_rows.append({'name': s.name, 'label': c, 'class_name': class_name(c, nets.num_classes),
                        'metrics': {k: v for k, v in scores.items() if k != 'name'}})
  stage('metrics')
  times['total'] = time.time() - start

  result = DemoResult(out_dir=os.path.abspath(out_dir), options=opts, scenes=files,
                      image_to_3d=i23d, ground_truth=gt_rows, times=times, notes=notes)
  record = {'options': dataclasses.asdict(opts), 'networks': nets.sources,
            'scenes': [dataclasses.asdict(f) for f in files],
            'image_to_3d': dataclasses.asdict(i23d) if i23d else None,
            'ground_truth': gt_rows, 'mean': {'generated': result.mean('generated'),
                                              'ground_truth': result.mean('ground_truth')},
            'times': times, 'notes': notes}
  result.report = report.write(out_dir, 'demo', record, result.table())
  return result


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
  rows += [[f'ground truth {g["name"]}', g['class_name']] + cell(g['metrics'])
           for g in result.ground_truth]
  if len(result.scenes) > 1:
    rows.append(['mean of the generated scenes', ''] + cell(result.mean('generated')))
  if len(result.ground_truth) > 1:
    rows.append(['mean of the ground truth (ceiling)', ''] + cell(result.mean('ground_truth')))
  out = ('3D consistency at the 3x9 cameras (each view against its 2 nearest):\n\n'
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
  lines = [result.table(), f'Outputs in {_rel(result.out_dir)}/ (per scene, <name> = '
           'class<c>_seed<s>):',
           '  grids/rgb_<name>.png    the 27 views, 3 x 9 as the cameras sit: yaw +0.6 (left) to '
           '-0.6 (right), pitch -0.15 (top) to +0.15 (bottom)',
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
  lines.append('  ' + ' and '.join(_rel(p) for p in result.report) + '  the tables above')
  lines += [f'Note: {n}' for n in result.notes]
  return '\n'.join(lines) + '\n'
