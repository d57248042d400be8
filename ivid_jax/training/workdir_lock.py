"""One training run per workdir: an advisory lock held for the whole run.

Two `ivid-jax train` processes on one workdir (a job launched twice, a
resumed run started while the old one still trains) would both restore the
same step and then write interleaved checkpoints, logs and config.json. The
run's process 0 holds an exclusive `flock` on `<workdir>/.ivid_jax_train.lock`
and writes its pid and host into it; a second run fails at once with a message
naming them. The kernel releases the lock when the process ends, however it
ends (SIGKILL included), so a crashed run never blocks the one that resumes
it.

Only process 0 takes the lock (the hosts of a multi-host run share its
workdir). `flock` is advisory and POSIX: on a platform without `fcntl` the
lock is skipped with a log line, and on a network file system it is as
reliable as the mount's own locking.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Iterator

from absl import logging
import jax

try:
  import fcntl  # POSIX only
except ImportError:  # pragma: no cover (Windows)
  fcntl = None

LOCK_NAME = '.ivid_jax_train.lock'


class WorkdirInUseError(RuntimeError):
  """Another training run holds the workdir."""


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds the workdir's training lock for the duration of the block (process 0 only).

  Raises:
    WorkdirInUseError: another process holds it; the message names that
      process (pid and host) and the lock file.
  """
  if jax.process_index() != 0:
    yield
    return
  if fcntl is None:
    logging.info('not locking %s (no flock on this platform)', workdir)
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_NAME)
  handle = open(path, 'a+', encoding='utf-8')  # pylint: disable=consider-using-with
  try:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      handle.seek(0)
      owner = handle.read().strip() or 'an unknown process'
      raise WorkdirInUseError(
          f'{workdir} is in use by another training run ({owner}; lock file {path}). Stop '
          'that run first, or train in another --workdir.') from e
    handle.seek(0)
    handle.truncate()
    handle.write(f'pid {os.getpid()} on {socket.gethostname()}\n')
    handle.flush()
    yield
  finally:
    handle.close()  # releases the lock
