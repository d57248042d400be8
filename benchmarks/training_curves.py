"""Loss curves of training runs: one table (mean loss per window of steps) and one picture.

  python benchmarks/training_curves.py --workdirs=runs/synthetic_uncond,runs/synthetic_cond \
      [--window=200] [--out=curves.png]

Reads the scalars `ivid-jax train` wrote to each workdir: metrics.jsonl (the
TF-free writer) or the TensorBoard event files (clu's writer; needs the
`tensorboard` package). A run resumed from a checkpoint logs some steps twice:
the later value of a step wins, as it is the one the final weights descend from.
The picture is drawn with PIL (no plotting library): loss against step, one
colour per run, log-scaled loss axis.
"""

from __future__ import annotations

import glob
import json
import math
import os

import numpy as np
from absl import app
from absl import flags
from PIL import Image
from PIL import ImageDraw

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'Training workdirs.', required=True)
_WINDOW = flags.DEFINE_integer('window', 200, 'Steps per row of the table.')
_OUT = flags.DEFINE_string('out', None, 'PNG of the curves (none: only the table).')
_KEY = flags.DEFINE_string('key', 'loss', 'The scalar to read.')

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]


def read_scalar(workdir: str, key: str = 'loss') -> dict[int, float]:
  """{step: value} of one scalar of a workdir (later records of a step win)."""
  values: dict[int, float] = {}
  jsonl = os.path.join(workdir, 'metrics.jsonl')
  if os.path.exists(jsonl):
    with open(jsonl, encoding='utf-8') as f:
      for line in f:
        record = json.loads(line)
        if key in record.get('values', record):
          values[int(record['step'])] = float(record.get('values', record)[key])
  events = sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*')),
                  key=os.path.getmtime)
  if events:
    from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
    from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
    for path in events:
      for event in event_file_loader.EventFileLoader(path).Load():
        for v in event.summary.value:
          if v.tag == key:
            value = (tensor_util.make_ndarray(v.tensor) if v.HasField('tensor')
                     else v.simple_value)
            values[int(event.step)] = float(np.asarray(value))
  if not values:
    raise ValueError(f'{workdir}: no {key!r} scalars (metrics.jsonl or TensorBoard events)')
  return dict(sorted(values.items()))


def plot(curves: dict[str, dict[int, float]], path: str, size=(720, 360)) -> str:
  """Loss against step (log loss axis), one colour per run, drawn with PIL."""
  w, h = size
  left, right, top, bottom = 60, 20, 20, 40
  img = Image.new('RGB', size, 'white')
  d = ImageDraw.Draw(img)
  steps = [s for c in curves.values() for s in c]
  vals = [v for c in curves.values() for v in c.values() if v > 0]
  x_max = max(steps)
  lo, hi = math.log10(min(vals)), math.log10(max(vals))
  lo, hi = math.floor(lo * 2) / 2, math.ceil(hi * 2) / 2
  sx = lambda s: left + (w - left - right) * s / max(x_max, 1)
  sy = lambda v: top + (h - top - bottom) * (hi - math.log10(v)) / max(hi - lo, 1e-6)
  d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
  for e in np.arange(lo, hi + 1e-9, 0.5):
    y = sy(10 ** e)
    d.line([left - 4, y, left, y], fill=(0, 0, 0))
    d.text((4, y - 6), f'{10 ** e:.3g}', fill=(0, 0, 0))
  for s in np.linspace(0, x_max, 5):
    d.line([sx(s), h - bottom, sx(s), h - bottom + 4], fill=(0, 0, 0))
    d.text((sx(s) - 12, h - bottom + 8), f'{int(s)}', fill=(0, 0, 0))
  d.text((w // 2 - 15, h - 16), 'step', fill=(0, 0, 0))
  for i, (name, c) in enumerate(curves.items()):
    colour = _COLOURS[i % len(_COLOURS)]
    pts = [(sx(s), sy(v)) for s, v in c.items() if v > 0]
    d.line(pts, fill=colour, width=2)
    d.text((w - right - 220, top + 8 + 14 * i), name, fill=colour)
  img.save(path)
  return path


def main(argv):
  del argv
  curves = {os.path.basename(os.path.normpath(wd)): read_scalar(wd, _KEY.value)
            for wd in _WORKDIRS.value}
  window = _WINDOW.value
  last = max(max(c) for c in curves.values())
  names = list(curves)
  print(f'# mean {_KEY.value} per {window} steps')
  print('| steps | ' + ' | '.join(names) + ' |')
  print('|---|' + '---:|' * len(names))
  for start in range(0, last, window):
    cells = []
    for n in names:
      vals = [v for s, v in curves[n].items() if start < s <= start + window]
      cells.append(f'{np.mean(vals):.4f}' if vals else '-')
    print(f'| {start + 1}-{start + window} | ' + ' | '.join(cells) + ' |')
  if _OUT.value:
    print(f'\nwrote {plot(curves, _OUT.value)}')


if __name__ == '__main__':
  app.run(main)
