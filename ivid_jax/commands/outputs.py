"""Where commands write, and the one overwrite rule (`--overwrite`). Imports no JAX.

Every command that writes takes `--out` (a folder, default `outputs/<command>`, or the one file
it writes) and refuses an existing output unless `--overwrite` is given: a folder holding files
(other than the log file `ivid-jax.log`), or a file. Training workdirs are not outputs: a rerun
resumes them.
"""

from __future__ import annotations

import os

from absl import flags

OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Write into an existing output folder (or '
                              'replace an existing output file) instead of refusing to.')
LOG_NAME = 'ivid-jax.log'  # written by ivid_jax.main; never counts as an output


class OutputExistsError(FileExistsError):
  """An output that exists, without --overwrite."""


def default_out(command: str) -> str:
  """The default output folder of `command`: outputs/<command>."""
  return os.path.join('outputs', command)


def check_out(path: str, *, is_file: bool = False, overwrite: bool | None = None) -> str:
  """`path` if the command may write there, else OutputExistsError naming it and the fix.

  Args:
    path: the output folder (or file, with is_file).
    overwrite: default: the --overwrite flag.
  """
  if overwrite is None:
    overwrite = OVERWRITE.value
  if overwrite or '://' in path:
    return path
  if is_file:
    if os.path.exists(path):
      raise OutputExistsError(f'{path}: already exists; pass --overwrite to replace it, or '
                              'choose another --out')
    return path
  if os.path.isfile(path):
    raise OutputExistsError(f'{path}: is a file, but --out must be a folder')
  if os.path.isdir(path) and set(os.listdir(path)) - {LOG_NAME}:
    raise OutputExistsError(f'{path}: the output folder already holds files; pass --overwrite '
                            'to write into it, or choose another --out')
  return path
