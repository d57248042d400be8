"""Bad input: errors that name the file and the problem, and counted skips.

Readers raise `BadExampleError` for a corrupt or truncated image, a missing
depth file, a depth map with NaN/inf or one whose shape does not match its
image. Under an explicit `skip_bad_examples` option a caller catches it, logs
it and counts it in a `SkipLog`, which is reported at the end: never a silent
wrong example.
"""

from __future__ import annotations

import dataclasses
import os

from absl import logging


class BadExampleError(ValueError):
  """An input example that cannot be used: `path` says which file, `problem` why."""

  def __init__(self, path: str | os.PathLike, problem: str):
    self.path = os.fspath(path)
    self.problem = problem
    super().__init__(f'{self.path}: {problem}')


@dataclasses.dataclass
class SkipLog:
  """Counts and remembers skipped examples (only used with skip_bad_examples)."""
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

  def add(self, error: BadExampleError) -> None:
    self.skipped.append((error.path, error.problem))
    logging.warning('Skipping bad example %s: %s', error.path, error.problem)

  def __len__(self) -> int:
    return len(self.skipped)

  def report(self) -> str:
    if not self.skipped:
      return 'no bad examples'
    lines = [f'skipped {len(self.skipped)} bad example(s):']
    lines += [f'  {path}: {problem}' for path, problem in self.skipped]
    return '\n'.join(lines)
