"""Atomic file writes: a temporary file in the same folder, renamed into place.

An interrupted write (a crash, a kill) leaves the previous file or none, never a
partial one. The temporary name starts with a dot and ends in .partial, so
folder listings that look for results (`*.npz`, `*.msgpack`) never see it.
"""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO, Callable


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> str:
  """Calls write(f) on a temporary binary file, syncs it and renames it to path. Returns path."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.partial', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files: give the usual mode
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path
