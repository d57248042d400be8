"""3D consistency of a folder of scenes (or of ground-truth synthetic scenes), as a report.

  result, markdown = eval_3d.run(scenes_dir='outputs/sample', out='outputs/eval-3d')

What `ivid-jax eval-3d` runs: `consistency.score_scenes` over the scenes, their mean as a
markdown table, both written as <out>/eval_3d.json and eval_3d.md (`report.write`).
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any, Sequence

from ivid_jax.evaluation import consistency
from ivid_jax.evaluation import report
from ivid_jax.evaluation import scenes as scenes_lib

METRICS = consistency.METRICS  # every metric; the default drops TSED without OpenCV
TSED_NOTE = "TSED left out: it needs OpenCV (pip install 'ivid-jax[eval]')."

# (metric, key, column title) of the report's table, in its order.
_COLUMNS = (('reprojection', 'psnr', 'reprojection PSNR'),
            ('reprojection', 'depth_inliers', 'depth within 2%'),
            ('reprojection', 'abs_rel', 'depth abs rel'),
            ('reprojection', 'coverage', 'overlap'),
            ('tsed', 'tsed', 'TSED'), ('tsed', 'match_pass', 'matches < 2px'),
            ('tsed', 'median_sed', 'median SED (px@256)'), ('flatness', 'flatness', 'flatness'))


def default_metrics() -> tuple[tuple[str, ...], str | None]:
  """Every metric the install can compute: (metrics, a note when TSED is left out, else None).

  TSED needs OpenCV, an extra; the default install scores reprojection and flatness.
  """
  if importlib.util.find_spec('cv2') is None:
    return tuple(m for m in consistency.METRICS if m != 'tsed'), TSED_NOTE
  return consistency.METRICS, None


def parse_synthetic(spec: str) -> tuple[int, str]:
  """'r64[:test]' -> (64, 'test')."""
  m = re.fullmatch(r'r(\d+)(?::(\w+))?', spec)
  if not m:
    raise ValueError(f'--synthetic must be r<RESOLUTION>[:SPLIT], e.g. r64:test; got {spec!r}')
  return int(m.group(1)), m.group(2) or 'test'


def check_metrics(metrics: Sequence[str]) -> None:
  """ValueError naming unknown metrics."""
  unknown = set(metrics) - set(consistency.METRICS)
  if unknown:
    raise ValueError(f'unknown --metrics {sorted(unknown)}; choose from {consistency.METRICS}')


def run(*, scenes_dir: str | None = None, synthetic: str | None = None,
        num_scenes: int | None = None, neighbors: int = 2,
        metrics: Sequence[str] | None = None, out: str | None = None,
        progress: bool = True) -> tuple[dict[str, Any], str]:
  """Scores the scenes and writes the report; returns (result, markdown).

  Args:
    scenes_dir: a sampler output folder (its scenes/) or a folder of scene .npz files; or
    synthetic: 'r<RES>[:SPLIT]', ground-truth synthetic_rgbd scenes (exactly one of the two).
    num_scenes: scenes scored (default: all of scenes_dir, 8 of synthetic).
    neighbors: each view is scored against its k nearest views.
    metrics: default: `default_metrics()` (TSED only with OpenCV; the result's 'notes' say).
    out: the report folder (default: scenes_dir; with synthetic, required).
  """
  if (scenes_dir is None) == (synthetic is None):
    raise ValueError('eval-3d needs exactly one of --scenes=DIR and --synthetic=r<RES>[:split]')
  notes = []
  if metrics is None:
    metrics, note = default_metrics()
    notes += [note] if note else []
  metrics = tuple(metrics)
  check_metrics(metrics)
  if 'tsed' in metrics:
    consistency._require_cv2()  # pylint: disable=protected-access
  if scenes_dir is not None:
    files = scenes_lib.scene_files(scenes_dir)[:num_scenes]
    scenes, total, source = scenes_lib.read_scenes(scenes_dir, num_scenes), len(files), scenes_dir
  else:
    from ivid_jax.evaluation import ground_truth  # pylint: disable=g-import-not-at-top
    resolution, split = parse_synthetic(synthetic)
    total = num_scenes or 8
    scenes = ground_truth.synthetic_scenes(resolution, split, 0, total)
    source = f'synthetic_rgbd r{resolution}:{split} (ground truth)'
  out = out or scenes_dir
  if out is None:
    raise ValueError('eval_3d.run: give `out` with `synthetic`')
  result = consistency.score_scenes(scenes, neighbors=neighbors, metrics=metrics,
                                    progress=progress, total=total)
  result['settings'] = {'source': source, 'neighbors': neighbors, 'metrics': list(metrics)}
  result['notes'] = notes
  mean = result['mean']
  columns = [c for c in _COLUMNS if c[0] in metrics]
  markdown = (f'3D consistency of {result["scenes"]} scene(s) from {source}, each view against '
              f'its {neighbors} nearest.\n\n' + report.markdown_table(
                  ['scenes'] + [c[2] for c in columns],
                  [[result['scenes']] + [mean[m][k] for m, k, _ in columns]]))
  paths = report.write(out, 'eval_3d', result, markdown)
  return {**result, 'paths': list(paths)}, markdown
