"""The sampler's entry point: model files in, batches of generated scenes out.

  nets = sampler.load_networks('uncond.msgpack', 'cond.msgpack', guidance=3.0)
  for batch in sampler.generate(nets, seeds=range(8), viewset='3x9', batch_size=4):
    print(batch.seeds, batch.views.shape)  # views [B, V, N, N, 4]; .conditions, .classes

Networks come as model files (`models.model_file`: what `ivid-jax export` and
`ivid-jax convert-checkpoint` write), checked for their kind and for matching
resolutions and classes. Scene i of the run is fully determined by its seed
(its key is `jax.random.key(seed)`), whatever the batch size, the device
count or the other seeds. Batches have a fixed size (the last one is padded
and trimmed), so the chain compiles once; with several devices (and hosts)
each batch is split over all of them (`jax.shard_map` over a 'data' axis) and
every device runs its own scenes end to end.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ivid_jax.diffusion import guidance as guidance_lib
from ivid_jax.diffusion import schedules
from ivid_jax.geometry import cameras
from ivid_jax.models import model_file
from ivid_jax.sampling import aggregate
from ivid_jax.sampling import chain as chain_lib
from ivid_jax.sampling import viewsets

CLASS_CHOICES = ('mod', 'uniform', 'random')
CLASS_STREAM = 2 ** 31 - 2  # the stream of a scene key its random class comes from


@dataclasses.dataclass(frozen=True, eq=False)
class Networks:
  """The two networks of a run and what they imply.

  Attributes:
    uncond, cond: chain.Network or None (image-to-3D needs no uncond; one view no cond).
    image_size: the views' side N.
    num_classes: class count of the networks, None for label-free models.
    sources: {'uncond': path, 'cond': path} for the record.
  """
  uncond: chain_lib.Network | None
  cond: chain_lib.Network | None
  image_size: int
  num_classes: int | None
  sources: dict[str, str]
  has_null_class: bool = False


def _network(mf: model_file.ModelFile, guidance: float) -> chain_lib.Network:
  diffusion = mf.diffusion
  eps_fn = guidance_lib.make_eps_fn(mf.model, float(guidance), inpaint=mf.kind == 'cond')
  params = jax.tree.map(jnp.asarray, mf.params)
  return chain_lib.Network(eps_fn, params, schedules.make_schedule(diffusion['schedule'],
                                                                   int(diffusion['num_steps'])))


def load_networks(uncond: str | None, cond: str | None, *, guidance: float = 3.0,
                  dtype: Any = None) -> Networks:
  """Reads and checks the model files.

  Args:
    uncond: the unconditional network's model file (None for image-to-3D).
    cond: the conditional network's model file (None for single views).
    guidance: classifier-free guidance weight w (eps = (1 + w) eps_c - w eps_null).
    dtype: compute dtype of the UNets (None: float32).

  Raises:
    FileNotFoundError / ValueError naming the file: a missing file, a file of
    the wrong kind (the unconditional network given as the conditional one),
    networks of different resolutions, class counts or schedule lengths.
  """
  overrides = {} if dtype is None else {'dtype': dtype}
  files = {}
  if uncond is not None:
    files['uncond'] = model_file.load(uncond, expect_kind='uncond', **overrides)
  if cond is not None:
    files['cond'] = model_file.load(cond, expect_kind='cond', **overrides)
  if not files:
    raise ValueError('no network given: pass the unconditional and/or the conditional model file')
  paths = {'uncond': uncond, 'cond': cond}
  first, *rest = files.items()
  for kind, mf in rest:
    ref_kind, ref = first
    for what, a, b in (('image size', ref.model.image_size, mf.model.image_size),
                       ('number of classes', ref.model.num_classes, mf.model.num_classes),
                       ('diffusion steps', ref.diffusion['num_steps'], mf.diffusion['num_steps'])):
      if a != b:
        raise ValueError(f'{paths[kind]}: {what} {b} does not match the {ref_kind} network '
                         f'{paths[ref_kind]} ({a}); both networks must come from the same setup')
  mf = first[1]
  return Networks(
      uncond=_network(files['uncond'], guidance) if 'uncond' in files else None,
      cond=_network(files['cond'], guidance) if 'cond' in files else None,
      image_size=mf.model.image_size, num_classes=mf.model.num_classes,
      sources={k: v for k, v in paths.items() if v is not None},
      has_null_class=bool(mf.model.has_null_class))


def parse_int_list(spec: str) -> list[int]:
  """'0-3,7,9-10' -> [0, 1, 2, 3, 7, 9, 10] (the authors' seed and class syntax)."""
  out = []
  for part in str(spec).split(','):
    part = part.strip()
    if not part:
      continue
    try:
      if '-' in part[1:]:
        lo, hi = part.split('-', 1) if not part.startswith('-') else ('-' + part[1:].split('-')[0],
                                                                    part[1:].split('-', 1)[1])
        lo, hi = int(lo), int(hi)
        if hi < lo:
          raise ValueError
        out.extend(range(lo, hi + 1))
      else:
        out.append(int(part))
    except ValueError:
      raise ValueError(f'{spec!r}: expected integers and ranges like 0-7,9') from None
  return out


def scene_keys(seeds: Sequence[int]) -> jax.Array:
  """One PRNG key per scene: `jax.random.key(seed)`. [B]."""
  return jax.vmap(jax.random.key)(jnp.asarray(list(seeds), jnp.uint32))


def choose_classes(seeds: Sequence[int], spec: str | Sequence[int] | None,
                   num_classes: int | None, allow_null: bool = False) -> np.ndarray | None:
  """Class label per scene (reference 6.3).

  'mod' (default): seed % C; 'uniform': i % C over the run; 'random': drawn
  from the scene's own key; or explicit labels (one per seed, or one for all;
  -1 is the null class when `allow_null`). None for networks without classes.
  """
  n = len(seeds)
  if num_classes is None:
    if spec not in (None, 'mod', 'uniform', 'random'):
      raise ValueError(f'classes {spec!r} given, but the networks have no class labels')
    return None
  spec = 'mod' if spec is None else spec
  if spec == 'mod':
    labels = np.asarray(seeds, np.int64) % num_classes
  elif spec == 'uniform':
    labels = np.arange(n) % num_classes
  elif spec == 'random':
    keys = jax.vmap(lambda k: jax.random.fold_in(k, CLASS_STREAM))(scene_keys(seeds))
    labels = np.asarray(jax.vmap(lambda k: jax.random.randint(k, (), 0, num_classes))(keys))
  else:
    labels = np.asarray(parse_int_list(spec) if isinstance(spec, str) else list(spec), np.int64)
    if labels.size == 1:
      labels = np.repeat(labels, n)
    if labels.size != n:
      raise ValueError(f'{labels.size} classes given for {n} seeds: give one per seed, one for '
                       f"all, or one of {CLASS_CHOICES}")
  low = -1 if allow_null else 0
  bad = labels[(labels < low) | (labels >= num_classes)]
  if bad.size:
    null = ' or -1 (the null class)' if allow_null else ''
    raise ValueError(f'class labels must be in 0..{num_classes - 1}{null}, got '
                     f'{sorted(set(bad.tolist()))}')
  return labels.astype(np.int32)


@dataclasses.dataclass
class SceneBatch:
  """Generated scenes on the host (numpy).

  Attributes:
    seeds: int [B]; classes: int32 [B] or None.
    viewset: the ViewSet (yaw, pitch [B, V], display order).
    modelviews: float32 [B, V, 4, 4].
    views: float32 [B, V, N, N, 4] RGB and z-buffer depth (near/far of the
      settings), not clipped.
    conditions: aggregate.Condition of numpy [B, V - 1, N, N, C].
  """
  seeds: np.ndarray
  classes: np.ndarray | None
  viewset: viewsets.ViewSet
  modelviews: np.ndarray
  views: np.ndarray
  conditions: aggregate.Condition


def _mesh_for(batch_size: int):
  """A 1-D 'data' mesh over all devices if the batch splits evenly over them, else None."""
  n = jax.device_count()
  if n == 1 or batch_size % n:
    return None
  return jax.make_mesh((n,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))


def _global(x: np.ndarray, mesh) -> jax.Array:
  """A batch-sharded global array from a numpy array every host holds in full."""
  if mesh is None:
    return jnp.asarray(x)
  sharding = NamedSharding(mesh, P('data'))
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _host(tree):
  """Global arrays -> numpy on every host."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    tree = multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, tree)


def run_batch(nets: Networks, seeds: Sequence[int], classes: np.ndarray | None,
              modelviews: np.ndarray, first_view: np.ndarray | None,
              settings: chain_lib.Settings, progress: bool = False) -> chain_lib.Chain:
  """One batch through the chain, sharded over all devices when it splits evenly.

  Returns:
    chain.Chain of numpy arrays.
  """
  mesh = _mesh_for(len(seeds))
  uncond = None if first_view is not None else nets.uncond
  data = {'key_data': np.asarray(jax.random.key_data(scene_keys(seeds))),
          'modelviews': np.asarray(modelviews, np.float32)}
  if classes is not None:
    data['classes'] = np.asarray(classes, np.int32)
  if first_view is not None:
    data['first_view'] = np.asarray(first_view, np.float32)
  data = {k: _global(v, mesh) for k, v in data.items()}
  weights = {name: (net.params, net.schedule) for name, net in
             (('uncond', uncond), ('cond', nets.cond)) if net is not None}
  layout = (mesh, None if uncond is None else uncond.eps_fn,
            None if nets.cond is None else nets.cond.eps_fn, tuple(sorted(data)),
            nets.image_size, settings)
  num_views = modelviews.shape[1]
  if not progress or num_views == 1:
    return _host(_compiled_chain(*layout)(weights, data))
  # View by view through the same compiled step, reporting between views.
  start_fn, step_fn = _compiled_steps(*layout)
  state = start_fn(weights, data)
  jax.block_until_ready(state.views)
  chain_lib.report(0)
  conds = []
  for j in range(1, num_views):
    state, cond = step_fn(weights, data, state, jnp.asarray(j, jnp.int32))
    jax.block_until_ready(state.views)
    chain_lib.report(j)
    conds.append(cond)
  conditions = jax.tree.map(lambda *a: jnp.stack(a, axis=1), *conds)
  return _host(chain_lib.Chain(state.views, conditions))


_COMPILED: dict = {}


def _networks(weights, uncond_fn, cond_fn):
  return {name: chain_lib.Network(fn, *weights[name]) for name, fn in
          (('uncond', uncond_fn), ('cond', cond_fn)) if fn is not None}


def _keys(data):
  return jax.random.wrap_key_data(data['key_data'])


def _built_once(build):
  """Memoises a builder of jitted programs on its arguments (one layout: one build)."""
  def cached(*layout):
    key = (build.__name__,) + layout
    if key not in _COMPILED:
      _COMPILED[key] = build(*layout)
    return _COMPILED[key]
  return cached


@_built_once
def _compiled_chain(mesh, uncond_fn, cond_fn, data_keys, image_size, settings):
  """The jitted chain of one layout: eps_fns (cached by make_eps_fn) are static."""

  def local(weights, data):
    nets = _networks(weights, uncond_fn, cond_fn)
    return chain_lib.run_chain(
        nets.get('uncond'), nets.get('cond'), _keys(data), data.get('classes'),
        data['modelviews'], data.get('first_view'), image_size=image_size, settings=settings)

  if mesh is not None:
    # Every device runs its own scenes end to end; the weights are replicated.
    local = jax.shard_map(local, mesh=mesh, in_specs=(P(), P('data')), out_specs=P('data'),
                          check_vma=False)
  return jax.jit(local)


@_built_once
def _compiled_steps(mesh, uncond_fn, cond_fn, data_keys, image_size, settings):
  """(start, step) of one layout, jitted once each: `chain.start` and `chain.step`."""

  def start(weights, data):
    nets = _networks(weights, uncond_fn, cond_fn)
    return chain_lib.start(nets.get('uncond'), _keys(data), data.get('classes'),
                           data['modelviews'], data.get('first_view'), image_size=image_size,
                           settings=settings)

  def step(weights, data, state, j):
    nets = _networks(weights, uncond_fn, cond_fn)
    return chain_lib.step(nets['cond'], _keys(data), data.get('classes'), data['modelviews'],
                          state, j, settings=settings)

  if mesh is not None:
    state_spec = chain_lib.State(P('data'), P(), P('data'))
    start = jax.shard_map(start, mesh=mesh, in_specs=(P(), P('data')), out_specs=state_spec,
                          check_vma=False)
    step = jax.shard_map(step, mesh=mesh, in_specs=(P(), P('data'), state_spec, P()),
                         out_specs=(state_spec, P('data')), check_vma=False)
  # The state is replaced by every step: its buffers (the views' meshes) are reused.
  return jax.jit(start), jax.jit(step, donate_argnums=2)


def effective_batch_size(batch_size: int) -> int:
  """Scenes per chain call: above the device count, rounded up to a multiple of it."""
  batch_size = max(1, int(batch_size))
  devices = jax.device_count()
  if batch_size > devices > 1:
    batch_size = math.ceil(batch_size / devices) * devices  # every device gets whole scenes
  return batch_size


def generate(nets: Networks, seeds: Sequence[int], *, viewset: str | Sequence = '3x9',
             classes: str | Sequence[int] | None = None, batch_size: int = 8,
             first_views: np.ndarray | None = None,
             settings: chain_lib.Settings = chain_lib.Settings(),
             progress: bool = False) -> Iterator[SceneBatch]:
  """Generates scenes batch by batch.

  Args:
    nets: from `load_networks`.
    seeds: one int per scene.
    viewset: a view set (see `viewsets`).
    classes: see `choose_classes`.
    batch_size: scenes per chain call (fixed: the last batch is padded).
    first_views: optional float32 [len(seeds), N, N, 4] given view 0 per scene
      (image-to-3D), RGB and z-buffer depth in [0, 1].
    settings: chain.Settings (steps, edits, geometry).
    progress: run view by view and report finished views to a `chain.progress_to` handler.

  Yields:
    SceneBatch per batch (without the padding).
  """
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError('no seeds given')
  if len(set(seeds)) != len(seeds):
    raise ValueError('seeds repeat: every scene needs its own seed')
  labels = choose_classes(seeds, classes, nets.num_classes, allow_null=nets.has_null_class)
  n = nets.image_size
  if first_views is not None:
    first_views = np.asarray(first_views, np.float32)
    if first_views.shape != (len(seeds), n, n, 4):
      raise ValueError(f'the given first views are {first_views.shape[1:]} but the networks make '
                       f'{n}x{n} RGBD views; expected [{len(seeds)}, {n}, {n}, 4]')
  elif nets.uncond is None:
    raise ValueError('no unconditional network: give one, or the first view (image-to-3D)')
  batch_size = effective_batch_size(batch_size)
  for start in range(0, len(seeds), batch_size):
    chunk = seeds[start:start + batch_size]
    real = len(chunk)
    # Pad with fresh seeds (never returned) so the compiled shapes stay fixed.
    pad = [max(seeds) + 1 + i for i in range(batch_size - real)] if len(seeds) > batch_size else []
    batch_seeds = chunk + pad
    vs = viewsets.make(viewset, scene_keys(batch_seeds))
    if vs.num_views > 1 and nets.cond is None:
      raise ValueError(f'the {vs.name} viewset has {vs.num_views} views: it needs the conditional '
                       'network')
    mvs = np.asarray(cameras.orbit_camera(vs.yaw, vs.pitch))
    lab = None if labels is None else np.concatenate(
        [labels[start:start + real], np.zeros(len(pad), np.int32)])
    first = None if first_views is None else np.concatenate(
        [first_views[start:start + real], np.repeat(first_views[start:start + 1], len(pad), 0)])
    out = run_batch(nets, batch_seeds, lab, mvs, first, settings, progress)
    trim = lambda a: a[:real]
    yield SceneBatch(
        seeds=np.asarray(chunk), classes=None if lab is None else lab[:real],
        viewset=viewsets.ViewSet(vs.name, vs.yaw[:real], vs.pitch[:real], vs.display),
        modelviews=mvs[:real], views=trim(out.views),
        conditions=jax.tree.map(trim, out.conditions))
