"""Evaluation reports: a JSON file (every number) and a markdown table (the headline) per run."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from ivid_jax import atomic


def _clean(value: Any) -> Any:
  """JSON-safe: NaN/inf as null, numpy scalars as Python numbers."""
  if isinstance(value, dict):
    return {str(k): _clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_clean(v) for v in value]
  if hasattr(value, 'item') and getattr(value, 'ndim', 1) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def fmt(value: Any, digits: int = 4) -> str:
  """A table cell: floats to `digits` significant digits, NaN/None as a dash."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return '-'
  if isinstance(value, float):
    return f'{value:.{digits}g}'
  return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ['| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
  lines += ['| ' + ' | '.join(fmt(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def write(out_dir: str, name: str, result: dict, markdown: str) -> tuple[str, str]:
  """Writes <out_dir>/<name>.json and <name>.md atomically; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  json_path = os.path.join(out_dir, f'{name}.json')
  md_path = os.path.join(out_dir, f'{name}.md')
  atomic.write_text_atomic(json_path, json.dumps(_clean(result), indent=2, sort_keys=True) + '\n')
  atomic.write_text_atomic(md_path, markdown)
  return json_path, md_path
