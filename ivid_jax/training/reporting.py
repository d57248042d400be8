"""Reporting: metric writers, progress (steps/s, ETA), profiles and the parameter overview.

clu's writers (TensorBoard event files + the console) and periodic actions
need TensorFlow and tensorboard (`pip install 'ivid-jax[tensorboard]'`). Without
them `create_writer` falls back to `BasicWriter` (console + metrics.jsonl +
PNG images, the same interface) and progress / profiling to small stand-ins, so
a TF-free install trains and reports all the same. Only process 0 writes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import time
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging
from PIL import Image

from ivid_jax import atomic
from ivid_jax import images

WRITERS = ('auto', 'clu', 'basic')


def tensorboard_available() -> bool:
  """Whether clu's writers can work here (TensorFlow and tensorboard importable)."""
  return all(importlib.util.find_spec(m) is not None for m in ('tensorflow', 'tensorboard'))


def resolve_writer(kind: str) -> str:
  """'auto' -> 'clu' when TensorBoard can be written, else 'basic'."""
  if kind not in WRITERS:
    raise ValueError(f'writer must be one of {WRITERS}, got {kind!r}')
  if kind == 'auto':
    return 'clu' if tensorboard_available() else 'basic'
  if kind == 'clu' and not tensorboard_available():
    raise ImportError("writer='clu' needs TensorFlow and tensorboard: pip install "
                      "'ivid-jax[tensorboard]' (or use writer='basic')")
  return kind


def create_writer(workdir: str, kind: str = 'auto') -> Any:
  """A clu MetricWriter (TensorBoard + console) or a BasicWriter; non-primary processes only log."""
  kind = resolve_writer(kind)
  primary = jax.process_index() == 0
  if kind == 'clu':
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    return metric_writers.create_default_writer(workdir, just_logging=not primary,
                                                asynchronous=True)
  return BasicWriter(workdir if primary else None)


def _scalar(value: Any) -> float:
  return float(np.asarray(value))


def save_png(path: str, image: np.ndarray) -> str:
  """Writes an [H, W, 3] image (float in [0, 1], rounded to nearest, or uint8) atomically."""
  picture = Image.fromarray(images.to_uint8(image, 'nearest'))  # a preview: nearest is closer
  return atomic.write_atomic(path, lambda f: picture.save(f, format='PNG'))


class BasicWriter:
  """clu's MetricWriter interface without TensorFlow: console log, metrics.jsonl and PNG files.

  Args:
    workdir: where metrics.jsonl and images/<name>_<step>.png go; None only logs
      (non-primary processes).
  """

  def __init__(self, workdir: str | None):
    self.workdir = workdir
    self._file = None
    if workdir:
      os.makedirs(workdir, exist_ok=True)
      self._file = open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8')

  def _record(self, step: int | None, kind: str, values: Mapping[str, Any]) -> None:
    """One JSON line: {"step": step, kind: values}, kind one of scalars, images, texts, hparams."""
    if self._file is not None:
      self._file.write(json.dumps({'step': step, kind: dict(values)}) + '\n')

  def write_summaries(self, step: int, values: Mapping[str, Any],
                      metadata: Mapping[str, Any] | None = None) -> None:
    del metadata
    self.write_scalars(step, {k: v for k, v in values.items() if np.ndim(v) == 0})

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    values = {k: _scalar(v) for k, v in scalars.items()}
    logging.info('[%d] %s', step, ', '.join(f'{k}={v:.6g}' for k, v in values.items()))
    self._record(step, 'scalars', values)

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    """images: name -> [N, H, W, C] or [H, W, C], uint8 or float in [0, 1]; one PNG per image."""
    if not self.workdir:
      return
    written = {}
    for name, batch in images.items():
      batch = np.asarray(batch)
      batch = batch[None] if batch.ndim == 3 else batch
      for i, image in enumerate(batch):
        suffix = f'_{i}' if len(batch) > 1 else ''
        image = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
        path = os.path.join(self.workdir, 'images', f'{name}_{step:08d}{suffix}.png')
        written[name] = save_png(path, image)
    self._record(step, 'images', written)

  def write_videos(self, step: int, videos: Mapping[str, Any]) -> None:
    del step, videos  # not needed by the trainer

  def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int) -> None:
    del step, audios, sample_rate

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    for k, v in texts.items():
      logging.info('[%d] %s: %s', step, k, v)
    self._record(step, 'texts', dict(texts))

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Mapping[str, int] | None = None) -> None:
    del step, arrays, num_buckets

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._record(None, 'hparams', {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                   for k, v in hparams.items()})

  def flush(self) -> None:
    if self._file is not None:
      self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None


def _format_secs(secs: float) -> str:
  hours, rest = divmod(int(secs), 3600)
  return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'


class BasicProgress:
  """clu's ReportProgress without TensorFlow: steps/s and ETA every `every_steps`, to the writer."""

  def __init__(self, *, num_train_steps: int, writer: Any, every_steps: int):
    self._total, self._writer, self._every = num_train_steps, writer, max(every_steps, 1)
    self._last: tuple[int, float] | None = None

  def __call__(self, step: int, t: float | None = None) -> bool:
    t = time.monotonic() if t is None else t
    if self._last is None:
      self._last = (step, t)
      return False
    if step % self._every and step != self._total:
      return False
    steps_per_sec = (step - self._last[0]) / max(t - self._last[1], 1e-9)
    self._last = (step, t)
    eta = (self._total - step) / max(steps_per_sec, 1e-9)
    logging.info('%.3g steps/s, %.1f%% (%d/%d), ETA %s', steps_per_sec,
                 100 * step / self._total, step, self._total, _format_secs(eta))
    self._writer.write_scalars(step, {'steps_per_sec': steps_per_sec})
    return True

  @contextlib.contextmanager
  def timed(self, name: str, wait_jax_async_dispatch: bool = True):
    del name, wait_jax_async_dispatch
    yield


def make_progress(*, num_train_steps: int, writer: Any, every_steps: int, kind: str) -> Any:
  """clu's periodic_actions.ReportProgress ('clu'), else BasicProgress."""
  if resolve_writer(kind) == 'clu':
    from clu import periodic_actions  # pylint: disable=g-import-not-at-top
    return periodic_actions.ReportProgress(num_train_steps=num_train_steps, writer=writer,
                                           every_steps=every_steps, every_secs=None)
  return BasicProgress(num_train_steps=num_train_steps, writer=writer, every_steps=every_steps)


class BasicProfile:
  """A profile (jax.profiler trace into logdir) of `num_steps` steps from `first_step` on."""

  def __init__(self, *, logdir: str, first_step: int, num_steps: int):
    self._logdir, self._first, self._num = logdir, first_step, num_steps
    self._running = False

  def __call__(self, step: int) -> None:
    from clu import profiler  # pylint: disable=g-import-not-at-top  (TF-free)
    if step == self._first and not self._running:
      profiler.start(logdir=self._logdir)
      self._running = True
    elif self._running and step >= self._first + self._num:
      profiler.stop()
      self._running = False
      logging.info('profile of steps %d..%d written to %s', self._first, step, self._logdir)


def make_profile(*, logdir: str, first_step: int, num_steps: int, kind: str) -> Any:
  """clu's periodic_actions.Profile ('clu'), else BasicProfile; None if num_steps is 0."""
  if num_steps <= 0 or jax.process_index() != 0:
    return None
  if resolve_writer(kind) == 'clu':
    from clu import periodic_actions  # pylint: disable=g-import-not-at-top
    return periodic_actions.Profile(logdir=logdir, num_profile_steps=num_steps,
                                    profile_duration_ms=None, first_profile=first_step,
                                    every_secs=None)
  return BasicProfile(logdir=logdir, first_step=first_step, num_steps=num_steps)


def log_parameter_overview(params: Any, writer: Any) -> None:
  """clu's parameter table (name, shape, size, mean, std) in the log, and the total count."""
  from clu import parameter_overview  # pylint: disable=g-import-not-at-top  (TF-free)
  if jax.process_index() != 0:
    return
  table = parameter_overview.get_parameter_overview(params, include_stats=False)
  logging.info('parameters:\n%s', table)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  writer.write_texts(0, {'parameters': f'{count:,} parameters'})
