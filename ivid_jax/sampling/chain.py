"""The sequential view sampler: one `lax.scan` over the views of a batch of scenes (reference 6.3).

View 0 comes from the unconditional network (classifier-free guidance on the
class label; DDPM when all T steps are asked for, DDIM otherwise), or is given
(image-to-3D). Every further view j comes from the conditional network: the
earlier views are aggregated into camera j (`aggregate.aggregate_condition`),
the condition enters the network as extra input channels, and DDIM (eta 0)
edits x_0 at every step (replace RGB 0.1, replace depth 0.2, constrain depth
0.5 behind `depth_convex`). The sample becomes rgbd = x / 2 + 1 / 2, not
clipped, and joins the stack of views.

The views after the first are `step`, whose state (`State`) is a fixed-size
stack of views [B, V, N, N, 4], their validity [V] and each generated view's
condition mesh (built once, when the view is made): one trace and one
compilation serve every view of every batch. `run_chain` scans `step` in one
program; `sampler.run_batch(progress=True)` calls the same compiled `step` once
per view and reports progress between calls (a host callback inside the program
would keep XLA's persistent cache from storing it). Randomness is explicit: scene b
has its own key, view j draws from `fold_in(key_b, j)` (so a view does not
depend on the batch or on how many views came before), and everything a
scene draws is computed per scene (`vmap`), so a seed gives the same scene in
any batch.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax import lax

from ivid_jax.diffusion import samplers
from ivid_jax.diffusion.schedules import Schedule
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.geometry import raster_kernel
from ivid_jax.geometry import warp
from ivid_jax.sampling import aggregate


class Network(NamedTuple):
  """A denoiser as the chain uses it.

  Attributes:
    eps_fn: `eps_fn(aux, key, x_t, t) -> eps` (static: build it once, e.g. with
      `guidance.make_eps_fn`); aux holds 'params', 'classes' and, for the
      conditional network, 'y', 'mask', 'mask_rgb' and the view index 'view'.
    params: the network's parameters (any pytree; passed as aux['params']).
    schedule: its noise schedule.
  """
  eps_fn: Callable[[Any, Array, Array, Array], Array]
  params: Any
  schedule: Schedule


AUTHORS_RESOLUTION = 128  # the authors' constants below are in pixels of their 128 px views
AUTHORS_ERODE_RGB = 3  # the condition's RGB erosion radius
AUTHORS_TOLERANCE = 0.03  # atol = rtol of the meshes' discontinuity flags and of depth_edge


def scaled_erode_rgb(image_size: int) -> int:
  """The authors' RGB erosion (3 px at 128 px) at another resolution: 3 at 128, 1 at 32.

  Their constant is in pixels: at 32 px it removes a band four times as wide in
  scene units, so most of a condition's colour is never shown to the network
  (measured: 3% of the pixels of the demo's image-to-3D conditions, 16% at radius 1).
  """
  return max(1, round(AUTHORS_ERODE_RGB * image_size / AUTHORS_RESOLUTION))


def scaled_tolerance(image_size: int, tolerance: float = AUTHORS_TOLERANCE) -> float:
  """A discontinuity tolerance of the authors' at another resolution: 0.03 x 128 / N.

  The tests compare the depths of neighbouring pixels, whose difference on a
  smooth slanted surface grows as the pixels grow: at 32 px the authors' 0.03
  flags most of a ground plane seen at a grazing angle (measured on synthetic
  training pairs: 33% of a condition shown at 0.02, 56% at 0.08), while true
  depth edges (an object before a wall) differ by far more.
  """
  return tolerance * AUTHORS_RESOLUTION / image_size


class Settings(NamedTuple):
  """Everything static about a chain (hashable; defaults are the authors')."""
  steps_uncond: int = 1000  # >= the schedule's T: DDPM over all steps; fewer: DDIM
  steps_cond: int = 50
  eta: float = 0.0  # DDIM eta of the further views
  # DDIM eta of view 0 when steps_uncond < T (the authors: 0). 1 draws like DDPM at DDIM's
  # cost: a young network's deterministic DDIM samples are speckled (data/models/MODEL_CARD.md, "How they must be sampled").
  eta_uncond: float = 0.0
  replace_rgb: float = 0.1
  replace_depth: float = 0.2
  constrain_depth: float = 0.5
  fov: float = 45.0
  near: float = depth_lib.SAMPLE_NEAR
  far: float = depth_lib.SAMPLE_FAR
  atol: float = AUTHORS_TOLERANCE  # see `for_resolution` for views other than 128 px
  rtol: float = AUTHORS_TOLERANCE
  erode_rgb: int = AUTHORS_ERODE_RGB
  ssaa: int = 3
  group: int | None = None  # scenes aggregated together; None: 1 on CPU, all elsewhere
  clip_denoised: bool = False  # x_0 clipped to [-1, 1] in every step (the authors: never)
  # The colour replacement on the final DDIM step too (the authors skip it there, so the shown
  # pixels are the network's own last denoising; a G_c that copies its condition loosely then
  # redraws them slightly differently in every view).
  replace_rgb_last: bool = False
  # How the conditions are rasterised: 'auto' (the rasteriser's XLA:CPU kernel on the CPU
  # backend where it builds, else jnp), 'cpu' or 'jnp'. The paths agree up to the last bits of
  # the angle weights (docs/performance.md); accelerators always run jnp.
  kernel: str = 'auto'


def for_resolution(image_size: int, **overrides) -> Settings:
  """Settings whose pixel-based constants (erosion, tolerances) are the authors' scaled to N px.

  At 128 px these are the authors' settings; `overrides` are any other fields.
  """
  tol = scaled_tolerance(image_size)
  return Settings(**{'erode_rgb': scaled_erode_rgb(image_size), 'atol': tol, 'rtol': tol,
                     **overrides})


class Chain(NamedTuple):
  """A batch of generated scenes.

  Attributes:
    views: float32 [B, V, N, N, 4]: RGB and z-buffer depth (near/far of the
      settings) in [0, 1] up to the model's overshoot (never clipped).
    conditions: aggregate.Condition with leading [B, V - 1]: the condition of
      views 1 .. V - 1.
  """
  views: Array
  conditions: aggregate.Condition


def _view_noise(key: Array, shape: tuple[int, ...]) -> tuple[Array, Array]:
  """(x_T, sampler key) of one view from its key."""
  k_noise, k_sampler = jax.random.split(key)
  return jax.random.normal(k_noise, shape, jnp.float32), k_sampler


def _first_view(net: Network, key: Array, classes: Array | None, shape: tuple[int, ...],
                steps: int, clip_denoised: bool = False, eta: float = 0.0) -> Array:
  """View 0 of one scene: x_0 [1, N, N, 4] in [-1, 1]."""
  x_T, k = _view_noise(jax.random.fold_in(key, 0), shape)  # pylint: disable=invalid-name
  aux = {'params': net.params, 'classes': classes}
  if steps >= net.schedule.num_steps:
    return samplers.ddpm_sample(net.eps_fn, aux, k, x_T, net.schedule,
                                clip_denoised=clip_denoised)
  return samplers.ddim_sample(net.eps_fn, aux, k, x_T, net.schedule, steps=steps, eta=eta,
                              clip_denoised=clip_denoised)


def next_view(net: Network, key: Array, classes: Array | None, cond: aggregate.Condition,
              view: Array, s: Settings) -> Array:
  """View `view` of one scene given its condition: x_0 [1, N, N, 4] in [-1, 1]."""
  inputs = jax.tree.map(lambda a: a[None], cond.model_inputs())
  x_T, k = _view_noise(jax.random.fold_in(key, view), inputs['y'].shape)  # pylint: disable=invalid-name
  aux = {'params': net.params, 'classes': classes, 'y': inputs['y'], 'mask': inputs['mask'],
         'mask_rgb': inputs['mask_rgb'], 'view': view}
  edit = samplers.InpaintEdit(inputs['y'], inputs['mask'], inputs['mask_rgb'],
                              inputs['depth_convex'], s.replace_rgb, s.replace_depth,
                              s.constrain_depth, s.replace_rgb_last)
  return samplers.ddim_sample(net.eps_fn, aux, k, x_T, net.schedule, steps=s.steps_cond,
                              eta=s.eta, edit_fn=samplers.inpaint_edit, edit_aux=edit,
                              clip_denoised=s.clip_denoised)


def _meshes(views: Array, modelviews: Array, s: Settings):
  """The condition meshes of views [V, N, N, 4]: built once per view, kept in the scan's carry."""
  return aggregate.condition_meshes(views, modelviews, fov=s.fov, near=s.near, far=s.far,
                                    atol=s.atol, rtol=s.rtol, erode_rgb=s.erode_rgb)


def view_condition(meshes, colors: Array, modelviews: Array, valid: Array, target: Array,
                   s: Settings, kernel: str) -> aggregate.Condition:
  """The condition of a further view (target modelview [4, 4]) from the scene's earlier
  views (`valid` [V]), as the chain builds it: `aggregate.condition_from_meshes` with the
  chain's settings."""
  return aggregate.condition_from_meshes(meshes, colors, modelviews, valid, target, fov=s.fov,
                                         near=s.near, far=s.far, atol=s.atol, rtol=s.rtol,
                                         erode_rgb=s.erode_rgb, ssaa=s.ssaa, kernel=kernel)


# The handlers of the enclosing `progress_to` blocks (innermost last).
_HANDLERS: list[Callable[[int], None]] = []
_LOCK = threading.Lock()


@contextlib.contextmanager
def progress_to(handler: Callable[[int], None]) -> Iterator[None]:
  """Chains run view by view (`sampler.run_batch(progress=True)`) report each finished view here.

  The compiled programs hold no host callback (XLA's persistent compilation
  cache does not store programs that do): the caller reports between views.
  """
  with _LOCK:
    _HANDLERS.append(handler)
  try:
    yield
  finally:
    with _LOCK:
      _HANDLERS.remove(handler)


def report(view: int) -> None:
  """Tells the innermost `progress_to` handler (if any) that view `view` is done."""
  with _LOCK:
    handler = _HANDLERS[-1] if _HANDLERS else None
  if handler is not None:
    handler(int(view))


class State(NamedTuple):
  """A batch of scenes part-way through the chain (the scan's carry).

  Attributes:
    views: float32 [B, V, N, N, 4] the views so far (zeros in later slots).
    valid: bool [V] the views generated so far.
    meshes: GridMesh [B, V, ...] each generated view's condition mesh, built
      once when the view is made (`aggregate.condition_meshes`).
  """
  views: Array
  valid: Array
  meshes: Any


def _per_scene(classes: Array | None, bsz: int):
  per_scene_classes = (lambda c: None) if classes is None else (lambda c: c[None])
  cls = jnp.zeros((bsz,), jnp.int32) if classes is None else classes
  return per_scene_classes, cls


def start(uncond: Network | None, keys: Array, classes: Array | None, modelviews: Array,
          first_view: Array | None, *, image_size: int, settings: Settings = Settings()) -> State:
  """View 0 of a batch of scenes (sampled, or given) and the chain's state (traceable).

  Args: as `run_chain`.
  """
  s = settings
  bsz, num_views = modelviews.shape[:2]
  shape = (1, image_size, image_size, 4)
  per_scene_classes, cls = _per_scene(classes, bsz)
  if first_view is None:
    if uncond is None:
      raise ValueError('the chain needs the unconditional network or a given first view')
    x0 = jax.vmap(lambda k, c: _first_view(uncond, k, per_scene_classes(c), shape,
                                           s.steps_uncond, s.clip_denoised,
                                           s.eta_uncond)[0])(keys, cls)
    rgbd0 = x0 / 2.0 + 0.5
  else:
    rgbd0 = jnp.asarray(first_view, jnp.float32)
  views = jnp.zeros((bsz, num_views) + shape[1:], jnp.float32).at[:, 0].set(rgbd0)
  valid = jnp.zeros((num_views,), bool).at[0].set(True)
  # The slots of later views hold view 0's mesh until `step` builds theirs (never drawn).
  meshes = jax.tree.map(lambda a: jnp.repeat(a, num_views, axis=1),
                        jax.vmap(lambda v, m: _meshes(v, m, s))(views[:, :1], modelviews[:, :1]))
  return State(views, valid, meshes)


def step(cond: Network, keys: Array, classes: Array | None, modelviews: Array, state: State,
         j: Array, *, settings: Settings = Settings()) -> tuple[State, aggregate.Condition]:
  """View j of every scene from the views before it (traceable; j may be traced).

  Returns:
    (the state with view j added, the views' conditions [B, ...]).
  """
  s = settings
  bsz = modelviews.shape[0]
  per_scene_classes, cls = _per_scene(classes, bsz)
  kernel = raster_kernel.resolve(s.kernel)
  targets = lax.dynamic_index_in_dim(modelviews, j, axis=1, keepdims=False)
  condition = jax.vmap(
      lambda me, v, m, t: view_condition(me, v[..., :3], m, state.valid, t, s, kernel))
  conds = warp.map_in_groups(condition, (state.meshes, state.views, modelviews, targets), s.group)
  x = jax.vmap(lambda k, c, cd: next_view(cond, k, per_scene_classes(c), cd, j, s)[0])(
      keys, cls, conds)
  rgbd = x / 2.0 + 0.5
  views = lax.dynamic_update_index_in_dim(state.views, rgbd, j, axis=1)
  new = jax.vmap(lambda v, m: _meshes(v, m, s))(rgbd[:, None], targets[:, None])
  meshes = jax.tree.map(lambda a, b: lax.dynamic_update_index_in_dim(a, b, j, axis=1),
                        state.meshes, new)
  return State(views, state.valid.at[j].set(True), meshes), conds


def empty_conditions(bsz: int, image_size: int) -> aggregate.Condition:
  """The conditions of a one-view chain: [B, 0, N, N, C]."""
  empty = jnp.zeros((bsz, 0, image_size, image_size, 1), jnp.float32)
  return aggregate.Condition(empty.repeat(3, -1), empty, empty, empty, empty)


def run_chain(uncond: Network | None, cond: Network | None, keys: Array, classes: Array | None,
              modelviews: Array, first_view: Array | None, *, image_size: int,
              settings: Settings = Settings()) -> Chain:
  """Generates a batch of scenes as one program: `start`, then a scan of `step` (traceable).

  Args:
    uncond: the unconditional network, or None when `first_view` is given.
    cond: the conditional network, or None for a single view.
    keys: PRNG keys [B], one per scene.
    classes: int32 [B] class labels, or None (a model without classes).
    modelviews: float32 [B, V, 4, 4] cameras in generation order.
    first_view: None, or float32 [B, N, N, 4] view 0 in [0, 1] (image-to-3D).
    image_size: N.
    settings: Settings.

  Returns:
    Chain.
  """
  bsz, num_views = modelviews.shape[:2]
  state = start(uncond, keys, classes, modelviews, first_view, image_size=image_size,
                settings=settings)
  if num_views == 1:
    return Chain(state.views, empty_conditions(bsz, image_size))
  if cond is None:
    raise ValueError(f'{num_views} views need the conditional network')
  state, conds = lax.scan(
      lambda st, j: step(cond, keys, classes, modelviews, st, j, settings=settings), state,
      jnp.arange(1, num_views, dtype=jnp.int32))
  return Chain(state.views, jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), conds))


@functools.partial(jax.jit, static_argnames=('uncond_fn', 'cond_fn', 'image_size', 'settings'))
def _chain_jit(uncond_fn, uncond_params, uncond_schedule, cond_fn, cond_params, cond_schedule,
               keys, classes, modelviews, first_view, *, image_size, settings):
  uncond = None if uncond_fn is None else Network(uncond_fn, uncond_params, uncond_schedule)
  cond = None if cond_fn is None else Network(cond_fn, cond_params, cond_schedule)
  return run_chain(uncond, cond, keys, classes, modelviews, first_view, image_size=image_size,
                   settings=settings)


def chain(uncond: Network | None, cond: Network | None, keys: Array, classes: Array | None,
          modelviews: Array, first_view: Array | None = None, *, image_size: int,
          settings: Settings = Settings()) -> Chain:
  """`run_chain` compiled once per (networks' eps_fns, shapes, settings)."""
  un = (None, None, None) if uncond is None else tuple(uncond)
  co = (None, None, None) if cond is None else tuple(cond)
  return _chain_jit(*un, *co, keys, classes, modelviews, first_view, image_size=image_size,
                    settings=settings)
