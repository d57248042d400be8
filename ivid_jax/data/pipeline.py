"""The input pipeline: a grain loader over any random-access RGBD source.

A source is anything with `__len__` and `__getitem__` returning a dict with
'rgb' uint8 [S, S, 3], 'depth' float32 [S, S, 1] (z-buffer in [0, 1]) and
optionally 'label' (e.g. `tfds.data_source(...)` of the project's builders;
`first_view` adapts multi-view examples).

Order of examples. Epoch e is the permutation `shuffle(seed)` of the source
(grain's index shuffle, reseeded per epoch). Global step s takes positions
[s G, (s + 1) G) of that permutation (G the global batch size, the remainder
N mod G dropped so every host has the same number of steps), and host h takes
the slice [s G + h b, s G + (h + 1) b) of it (b = G / hosts). So hosts read
disjoint shards, and the global batch at a step is the same whatever the
number of hosts.

Everything an example carries is a function of (seed, epoch, source index)
alone: its position in the stream, its random camera V1 (reference 2.2) and the
seed of its on-device augmentations. So a resumed run, a different sharding or
a different batch size give each example exactly the same training pair.

The host converts to x0 float32 in [-1, 1]: on the 2-core development machines
this costs 0.12 ms per 128 px example (measured), small beside reading, and
it keeps the device step independent of the storage format. (Sending uint8 rgb
plus depth would move 7 instead of 16 bytes a pixel to the device; switch if a
host link ever becomes the bottleneck.)
"""

from __future__ import annotations

import collections
import json
from typing import Any, Iterator, Mapping, Protocol, Sequence

import grain
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ivid_jax.data import preprocess
from ivid_jax.data.errors import BadExampleError
from ivid_jax.geometry import cameras
from ivid_jax.geometry import depth as depth_lib

NO_LABEL = -1  # label of sources without labels (the UNet's null class)


class Source(Protocol):
  """A random-access source of examples."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> Mapping[str, Any]:
    ...


class FirstView:
  """A multi-view source ('rgb' [V, S, S, 3], 'depth' [V, S, S, 1]) seen through one view.

  Single-view examples pass through unchanged.
  """

  def __init__(self, source: Source, view: int = 0):
    self.source = source
    self.view = view

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    example = dict(self.source[index])
    for key, ndim in (('rgb', 4), ('depth', 4)):
      value = np.asarray(example.get(key))
      if value.ndim == ndim:
        example[key] = value[self.view]
    return example

  def __repr__(self) -> str:
    return f'FirstView({self.source!r}, view={self.view})'


def first_view(source: Source) -> FirstView:
  """Adapts a multi-view source (e.g. synthetic_rgbd) to its view 0."""
  return FirstView(source, 0)


class ArraySource:
  """An in-memory source: rgb uint8 [N, S, S, 3], depth float32 [N, S, S, 1], labels [N]."""

  def __init__(self, rgb: np.ndarray, depth: np.ndarray, labels: np.ndarray | None = None):
    if len(rgb) != len(depth) or (labels is not None and len(labels) != len(rgb)):
      raise ValueError(f'ArraySource: lengths differ: rgb {len(rgb)}, depth {len(depth)}, '
                       f'labels {None if labels is None else len(labels)}')
    self.rgb, self.depth, self.labels = rgb, depth, labels

  def __len__(self) -> int:
    return len(self.rgb)

  def __getitem__(self, index: int) -> dict[str, Any]:
    example = {'rgb': self.rgb[index], 'depth': self.depth[index]}
    if self.labels is not None:
      example['label'] = self.labels[index]
    return example

  def __repr__(self) -> str:
    return f'ArraySource({len(self)} x {self.rgb.shape[1:]})'


def random_smooth_source(num_examples: int, size: int, seed: int = 0,
                         num_labels: int = 10) -> ArraySource:
  """Random smooth RGBD scenes for tests and benchmarks (no dataset needed).

  Colour is a sum of random low-frequency waves; depth a tilted plane between
  D = 1 and 3 with a nearer rectangle (so warps open disocclusions).
  """
  g = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  rgb = np.zeros((num_examples, size, size, 3), np.float32)
  for _ in range(3):
    fx, fy, phase = g.uniform(0.5, 3, (3, num_examples, 1, 1, 3))
    rgb += np.sin(2 * np.pi * (fx * xx[..., None] + fy * yy[..., None]) + 6 * phase)
  rgb = np.clip(0.5 + rgb / 6, 0, 1)
  tilt = g.uniform(-1, 1, (2, num_examples, 1, 1))
  d = 2.0 + 0.5 * (tilt[0] * (xx - 0.5) + tilt[1] * (yy - 0.5)) * 2
  lo = g.uniform(0.2, 0.5, (num_examples, 2))
  for i in range(num_examples):
    r0, c0 = (lo[i] * size).astype(int)
    d[i, r0:r0 + size // 3, c0:c0 + size // 3] = 1.0
  z = np.asarray(depth_lib.project_depth(d), np.float32)  # z-buffer, near 0.5, far 100
  return ArraySource(np.round(rgb * 255).astype(np.uint8), z[..., None].astype(np.float32),
                     g.integers(0, num_labels, num_examples))


def _example_name(source: Source, index: int, example: Mapping[str, Any]) -> str:
  name = example.get('file_name')
  if isinstance(name, bytes):
    name = name.decode('utf-8', 'replace')
  return f'{source!r}[{index}]' + (f' ({name})' if name else '')


def check_example(example: Mapping[str, Any], name: str, size: int | None = None) -> None:
  """Raises BadExampleError(name, problem) unless `example` is a valid RGBD example."""
  for key in ('rgb', 'depth'):
    if key not in example:
      raise BadExampleError(name, f'missing {key!r} (has {sorted(example)})')
  rgb, depth = np.asarray(example['rgb']), np.asarray(example['depth'])
  if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.shape[0] != rgb.shape[1]:
    raise BadExampleError(name, f'rgb must be uint8 [S, S, 3], got {rgb.dtype} {rgb.shape} '
                          '(multi-view sources need first_view)')
  if depth.shape != rgb.shape[:2] + (1,) or not np.issubdtype(depth.dtype, np.floating):
    raise BadExampleError(name, f'depth must be float [{rgb.shape[0]}, {rgb.shape[1]}, 1], got '
                          f'{depth.dtype} {depth.shape}')
  if size is not None and rgb.shape[0] != size:
    raise BadExampleError(name, f'size {rgb.shape[0]} differs from the first example\'s {size}')
  if not np.all(np.isfinite(depth)) or depth.min() < 0 or depth.max() > 1:
    raise BadExampleError(name, 'depth must be a finite z-buffer in [0, 1], got range '
                          f'[{np.nanmin(depth)}, {np.nanmax(depth)}]')


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
  """The generator of everything random about one example in one epoch."""
  return np.random.default_rng([seed, epoch, index])


def example_camera_and_rng(seed: int, epoch: int, index: int) -> dict[str, Any]:
  """The random camera V1 (`cameras.training_camera_params`) and augmentation key of one example.

  Returns:
    {'camera': {'yaw', 'pitch', 'radius': float32 [], 'target': float32 [3]},
     'rng': uint32 [2] raw threefry key data for `jax.random.wrap_key_data`}.
  """
  g = example_rng(seed, epoch, index)
  camera = cameras.training_camera_params(g.standard_normal(6))
  camera = {k: np.asarray(v, np.float32) for k, v in camera.items()}
  return {'camera': camera, 'rng': g.integers(0, 2**32, size=2, dtype=np.uint32)}


class _Locate:
  """Host-local element index -> (epoch, source index) of the global order (module docstring)."""

  def __init__(self, num_examples: int, global_batch: int, local_batch: int, shard_index: int,
               seed: int):
    self.n, self.global_batch, self.local_batch = num_examples, global_batch, local_batch
    self.shard_index = shard_index
    self.per_host_epoch = (num_examples // global_batch) * local_batch
    # Spread user seeds: grain reseeds epoch e with seed + e, so seeds s and
    # s + 1 would otherwise share all but one epoch's order.
    shuffle_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
    self.order = grain.MapDataset.range(num_examples).shuffle(seed=shuffle_seed)

  def __call__(self, i: int) -> tuple[int, int, int]:
    epoch, j = divmod(int(i), self.per_host_epoch)
    step, k = divmod(j, self.local_batch)
    position = step * self.global_batch + self.shard_index * self.local_batch + k
    # RangeMapDataset reads its index modulo n, so this is the source index.
    shuffled = int(self.order[epoch * self.n + position])
    return epoch, shuffled, position


class _Load:
  """(epoch, source index, position) -> one host-side example dict."""

  def __init__(self, source: Source, seed: int, conditional: bool, size: int):
    self.source, self.seed, self.conditional, self.size = source, seed, conditional, size

  def __call__(self, located: tuple[int, int, int]) -> dict[str, Any]:
    epoch, index, _ = located
    example = self.source[index]
    name = _example_name(self.source, index, example)
    check_example(example, name, self.size)
    out = {
        'x0': preprocess.to_model_input(np.asarray(example['rgb']),
                                        np.asarray(example['depth'], np.float32)),
        'label': np.int32(example.get('label', NO_LABEL)),
        'index': np.int64(index),
        'epoch': np.int32(epoch),
    }
    if self.conditional:
      out.update(example_camera_and_rng(self.seed, epoch, index))
    return out


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """Global steps in one epoch (the remainder of the permutation is dropped)."""
  return num_examples // global_batch_size


def make_dataset(source: Source, *, global_batch_size: int, seed: int,
                 shard_index: int | None = None, shard_count: int | None = None,
                 num_epochs: int | None = None, conditional: bool = False) -> grain.MapDataset:
  """The host-local grain MapDataset of batches (see `make_loader`).

  Element i is this host's batch of global step i (numpy dicts, batch axis first).
  """
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index {shard_index} not in [0, {shard_count})')
  if global_batch_size % shard_count:
    raise ValueError(f'global_batch_size {global_batch_size} is not divisible by the '
                     f'{shard_count} hosts')
  n = len(source)
  if n < global_batch_size:
    raise ValueError(f'{source!r} has {n} examples, fewer than one global batch of '
                     f'{global_batch_size}')
  if not 0 <= seed < 2**32:
    raise ValueError(f'seed must be in [0, 2**32), got {seed}')
  local_batch = global_batch_size // shard_count
  first = source[0]
  check_example(first, _example_name(source, 0, first))
  size = np.asarray(first['rgb']).shape[0]

  locate = _Locate(n, global_batch_size, local_batch, shard_index, seed)
  ds = grain.MapDataset.range(locate.per_host_epoch).repeat(num_epochs)
  ds = ds.map_with_index(lambda i, _: locate(i))
  ds = ds.map(_Load(source, seed, conditional, size))
  return ds.batch(local_batch, drop_remainder=True)


def make_loader(source: Source, *, global_batch_size: int, seed: int,
                shard_index: int | None = None, shard_count: int | None = None,
                num_epochs: int | None = None, worker_count: int = 0, read_threads: int = 4,
                prefetch_batches: int = 8, conditional: bool = False) -> grain.DatasetIterator:
  """A checkpointable iterator over this host's batches.

  Args:
    source: random-access examples (module docstring).
    global_batch_size: examples per step over all hosts.
    seed: in [0, 2**32): fixes the order, cameras and augmentation keys.
    shard_index, shard_count: this host and the number of hosts (default:
      jax.process_index() and jax.process_count()).
    num_epochs: None repeats forever.
    worker_count: grain worker processes (0: threads in this process). Same
      batches for any count; workers need absl flags parsed (app.run) and a
      `__main__` guard in the launching script.
    read_threads, prefetch_batches: grain ReadOptions (threads, buffered batches).
    conditional: also yield each example's camera V1 and augmentation key.

  Returns:
    A grain DatasetIterator (`get_state` / `set_state`, orbax via
    `grain.checkpoint.CheckpointSave`) of dicts with B = global / hosts:
      x0: float32 [B, S, S, 4] in [-1, 1] (RGB then z-buffer depth).
      label: int32 [B] (NO_LABEL for unlabelled sources).
      index: int64 [B] source index; epoch: int32 [B].
      conditional only: camera {'yaw', 'pitch', 'radius': float32 [B],
        'target': float32 [B, 3]} and rng uint32 [B, 2] key data.
  """
  ds = make_dataset(source, global_batch_size=global_batch_size, seed=seed,
                    shard_index=shard_index, shard_count=shard_count, num_epochs=num_epochs,
                    conditional=conditional)
  iter_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                                 prefetch_buffer_size=prefetch_batches))
  if worker_count > 0:
    iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return iter(iter_ds)


# Iterator state: JSON bytes, or orbax (per-process files) through grain's handler.


def state_bytes(iterator) -> bytes:
  """The iterator's state as JSON bytes (store beside a training checkpoint)."""
  return json.dumps(iterator.get_state()).encode()


def restore_state(iterator, state: bytes) -> None:
  """Sets an iterator made with the same arguments to a state from `state_bytes`."""
  iterator.set_state(json.loads(state.decode()))


def orbax_save_args(iterator):
  """Args for `ocp.args.Composite(..., data=orbax_save_args(it))`: one file per process."""
  return grain.checkpoint.CheckpointSave(iterator)


def orbax_restore_args(iterator):
  """Restore counterpart of `orbax_save_args`; sets `iterator`'s state in place."""
  return grain.checkpoint.CheckpointRestore(iterator)


# Device prefetch.


def batch_sharding(mesh_or_sharding: Mesh | jax.sharding.Sharding,
                   axis: str = 'data') -> jax.sharding.Sharding:
  """NamedSharding splitting the leading (batch) axis over `axis`, or the sharding given."""
  if isinstance(mesh_or_sharding, Mesh):
    if axis not in mesh_or_sharding.axis_names:
      raise ValueError(f'mesh axes {mesh_or_sharding.axis_names} have no {axis!r} axis')
    return NamedSharding(mesh_or_sharding, PartitionSpec(axis))
  return mesh_or_sharding


def to_global(batch: Any, sharding: jax.sharding.Sharding) -> Any:
  """Host-local numpy batch -> global jax.Arrays with the batch axis over all hosts' devices."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      batch)


class DevicePrefetchIterator(grain.DatasetIterator):
  """Keeps `size` batches on device ahead of the consumer; checkpointable.

  Its state is the host iterator's state just after the last batch *yielded*
  (not the ones buffered), so restoring it resumes at the next batch.
  """

  def __init__(self, host: grain.DatasetIterator, sharding: jax.sharding.Sharding,
               size: int = 2):
    super().__init__(host)
    self._host, self._sharding, self._size = host, sharding, size
    self._buffer: collections.deque = collections.deque()
    self._state = host.get_state()

  def _fill(self) -> None:
    while len(self._buffer) < self._size:
      try:
        batch = next(self._host)
      except StopIteration:
        return
      self._buffer.append((to_global(batch, self._sharding), self._host.get_state()))

  def __next__(self):
    self._fill()
    if not self._buffer:
      raise StopIteration
    batch, self._state = self._buffer.popleft()
    self._fill()  # transfers are asynchronous: start the next ones now
    return batch

  def get_state(self) -> dict[str, Any]:
    return self._state

  def set_state(self, state: dict[str, Any]) -> None:
    self._buffer.clear()
    self._host.set_state(state)
    self._state = state


def device_prefetch(iterator: grain.DatasetIterator,
                    mesh_or_sharding: Mesh | jax.sharding.Sharding, size: int = 2,
                    axis: str = 'data') -> DevicePrefetchIterator:
  """Puts each host batch on the devices, split along the batch axis (see DevicePrefetchIterator)."""
  return DevicePrefetchIterator(iterator, batch_sharding(mesh_or_sharding, axis), size)


def take(iterator: Iterator[Any], n: int) -> list[Any]:
  """The next n elements of an iterator."""
  return [next(iterator) for _ in range(n)]


def stack_batches(batches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Concatenates host batches along the batch axis (e.g. all hosts' parts of one step)."""
  return jax.tree.map(lambda *xs: np.concatenate(xs), *batches)

