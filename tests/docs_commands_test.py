"""Every `ivid-jax ...` line of the user docs parses: a renamed flag breaks the build, not the docs.

The lines are those in fenced code blocks of README.md, docs/*.md and data/models/MODEL_CARD.md
that start with `ivid-jax ` (after an optional `$ `), backslash continuations joined and
`# comments` dropped. Each is parsed by `ivid_jax.main.parse_only` (flags validated, config files
loaded and their overrides applied), never run. A line holding a placeholder (`<...>`, `...`,
`[optional]` or `a|b`) is allowed to fail; every other line must parse.
"""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
DOCS = [d for d in ['README.md', *sorted(glob.glob('docs/*.md', root_dir=ROOT)),
                    'data/models/MODEL_CARD.md'] if os.path.exists(os.path.join(ROOT, d))]
_PLACEHOLDER = re.compile(r'<[^>]*>|\.\.\.|\[[^\]]*\]|\S\|\S')


def command_lines(text: str) -> list[str]:
  """The `ivid-jax ...` lines inside the fenced code blocks of a markdown text."""
  lines, fenced, pending = [], False, None
  for raw in text.splitlines():
    line = raw.strip()
    if line.startswith('```') or line.startswith('~~~'):
      fenced, pending = not fenced, None
      continue
    if not fenced:
      continue
    if pending is not None:
      pending += ' ' + line
    elif re.match(r'(\$ )?ivid-jax ', line):
      pending = line[2:] if line.startswith('$ ') else line
    else:
      continue
    if pending.endswith('\\'):
      pending = pending[:-1].rstrip()
    else:
      lines.append(pending)
      pending = None
  return lines


def test_command_lines_are_found_in_fences_with_continuations():
  text = '\n'.join([
      'ivid-jax demo --not=in_a_fence', '```bash', '$ ivid-jax demo --out=a  # a comment',
      'ivid-jax sample --uncond=u \\', '    --cond=c', 'pip install ivid-jax', '```',
      '```', 'ivid-jax eval-3d --scenes=outputs/demo', '```'])
  assert command_lines(text) == ['ivid-jax demo --out=a  # a comment',
                                 'ivid-jax sample --uncond=u --cond=c',
                                 'ivid-jax eval-3d --scenes=outputs/demo']


_PARSER = r'''
import json, shlex, sys
from ivid_jax import main
failures = []
for line in json.load(sys.stdin):
  try:
    main.parse_only(shlex.split(line, comments=True))
  except Exception as e:  # pylint: disable=broad-except
    failures.append([line, f'{type(e).__name__}: {e}'])
print(json.dumps(failures))
'''


def _parse_failures(lines: list[str]) -> list[tuple[str, str]]:
  # absl flags are process-global and two commands may share a flag's name: one process each.
  by_command = {}
  for line in lines:
    words = line.split()
    by_command.setdefault(words[1] if len(words) > 1 else '', []).append(line)
  failures = []
  for command_lines_ in by_command.values():
    result = subprocess.run([sys.executable, '-c', _PARSER], input=json.dumps(command_lines_),
                            capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    failures += [tuple(f) for f in json.loads(result.stdout.strip().splitlines()[-1])]
  return failures


def test_the_parser_rejects_a_renamed_flag_and_accepts_a_good_line():
  failures = _parse_failures(['ivid-jax render --scene_dir=outputs/sample',
                              'ivid-jax render --scenes=outputs/sample --out=outputs/r',
                              'ivid-jax train --config=configs/tiny_uncond.py '
                              '--config.total_steps=20 --workdir=runs/x'])
  assert failures == [('ivid-jax render --scene_dir=outputs/sample',
                       "UnrecognizedFlagError: Unknown command line flag 'scene_dir'. Did "
                       'you mean: scenes ?')]


@pytest.mark.parametrize('doc', DOCS)
def test_every_command_line_of_the_docs_parses(doc):
  with open(os.path.join(ROOT, doc), encoding='utf-8') as f:
    lines = command_lines(f.read())
  failures = [(line, why) for line, why in _parse_failures(lines)
              if not _PLACEHOLDER.search(line)]
  assert not failures, '\n'.join(f'{doc}: {line}\n  -> {why}' for line, why in failures)
