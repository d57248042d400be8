"""Atomic file writes: a temporary file in the same folder, renamed into place.

An interrupted write (a crash, a kill) leaves the previous file or none, never a
partial one. The temporary name starts with a dot and ends in .partial, so
folder listings that look for results (`*.npz`, `*.msgpack`) never see it.
Every module that writes a result file goes through this one: `write_atomic`
when the bytes come from Python, `atomic_path` when another program (ffmpeg,
a compiler) writes the file by name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO, Callable


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = '') -> Iterator[str]:
  """Yields a temporary file name beside path; renames it to path when the block succeeds.

  For writers that take a file name rather than a file object. The temporary
  name is `.<basename>.<random>.partial<suffix>`: pass the extension a writer
  reads the format from (ffmpeg: '.mp4'). If the block raises, the temporary
  file is removed and path is left as it was. The file is synced before the
  rename and given the usual mode (0666 less the umask).
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix=f'.partial{suffix}',
                             dir=folder)
  os.close(fd)
  try:
    yield tmp
    with open(tmp, 'rb') as f:  # the writer may have closed it without syncing
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files: give the usual mode
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> str:
  """Calls write(f) on a temporary binary file, syncs it and renames it to path. Returns path."""
  path = os.fspath(path)
  with atomic_path(path) as tmp:
    with open(tmp, 'wb') as f:
      write(f)
  return path


def write_text_atomic(path: str | os.PathLike, text: str) -> str:
  """Writes text (UTF-8) to path atomically. Returns path."""
  return write_atomic(path, lambda f: f.write(text.encode('utf-8')))
