"""ivid-jax eval-3d: 3D consistency of generated scenes, no pretrained network needed.

  ivid-jax eval-3d --scenes=OUT                      # OUT/scenes/*.npz from `ivid-jax sample`
  ivid-jax eval-3d --synthetic=r64:test --num_scenes=8   # the ground-truth ceilings

Per scene (views, linear depths, cameras; `ivid_jax.evaluation.scenes` reads
the ivid-jax and the authors' scene files), each view against its
--neighbors nearest views:
  reprojection  the view warped by its own depth into the neighbour: PSNR of the
                colours and relative error of the depths where the warp shows an
                unoccluded surface (a consistent scene predicts its neighbours);
  tsed          SIFT matches between neighbours and their symmetric epipolar
                distance under the known cameras (Yu et al. 2023): the share of
                pairs whose median is under 2 px at 256 px (needs OpenCV:
                pip install 'ivid-jax[eval]');
  flatness      the share of each depth map's variance one plane explains (1 =
                a billboard, the failure that FID does not see).
--synthetic scores synthetic_rgbd scenes rendered on the fly (exact views and
depth): every metric's ceiling at that resolution. Writes <--out>/eval_3d.json
(per scene and mean) and eval_3d.md; --out defaults to --scenes.
"""

from __future__ import annotations

import re
from typing import Any

from absl import app
from absl import flags

_SCENES = flags.DEFINE_string('scenes', None, 'A sampler output folder (its scenes/) or a folder '
                              'of scene .npz files.')
_SYNTHETIC = flags.DEFINE_string('synthetic', None, 'Ground-truth scenes of synthetic_rgbd, '
                                 'r<RES>[:SPLIT] (e.g. r64:test), rendered without a TFDS build.')
_NUM_SCENES = flags.DEFINE_integer('num_scenes', None, 'Scenes scored (default: all of --scenes, '
                                   '8 of --synthetic).')
_NEIGHBORS = flags.DEFINE_integer('neighbors', 2, 'Each view is scored against its k nearest '
                                  'views (by optical-axis angle), both directions.')
_METRICS = flags.DEFINE_list('metrics', ['reprojection', 'tsed', 'flatness'], 'Which metrics.')
_OUT = flags.DEFINE_string('out', None, 'Report folder (default: --scenes, or ./eval_3d).')


def parse_synthetic(spec: str) -> tuple[int, str]:
  """'r64[:test]' -> (64, 'test')."""
  m = re.fullmatch(r'r(\d+)(?::(\w+))?', spec)
  if not m:
    raise ValueError(f'--synthetic must be r<RESOLUTION>[:SPLIT], e.g. r64:test; got {spec!r}')
  return int(m.group(1)), m.group(2) or 'test'


def run(*, scenes_dir: str | None = None, synthetic: str | None = None,
        num_scenes: int | None = None, neighbors: int = 2,
        metrics: tuple[str, ...] = ('reprojection', 'tsed', 'flatness'),
        out: str | None = None, progress: bool = True) -> tuple[dict[str, Any], str]:
  """Scores the scenes and writes the report; returns (result, markdown)."""
  from ivid_jax.evaluation import consistency  # pylint: disable=g-import-not-at-top
  from ivid_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  from ivid_jax.evaluation import scenes as scenes_lib  # pylint: disable=g-import-not-at-top
  if (scenes_dir is None) == (synthetic is None):
    raise ValueError('eval-3d needs exactly one of --scenes=DIR and --synthetic=r<RES>[:split]')
  unknown = set(metrics) - set(consistency.METRICS)
  if unknown:
    raise ValueError(f'unknown --metrics {sorted(unknown)}; choose from {consistency.METRICS}')
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
  result = consistency.score_scenes(scenes, neighbors=neighbors, metrics=tuple(metrics),
                                    progress=progress, total=total)
  result['settings'] = {'source': source, 'neighbors': neighbors, 'metrics': list(metrics)}
  mean = result['mean']
  columns = [('reprojection', 'psnr', 'reprojection PSNR'),
             ('reprojection', 'depth_inliers', 'depth within 2%'),
             ('reprojection', 'abs_rel', 'depth abs rel'),
             ('reprojection', 'coverage', 'overlap'),
             ('tsed', 'tsed', 'TSED'), ('tsed', 'match_pass', 'matches < 2px'),
             ('tsed', 'median_sed', 'median SED (px@256)'), ('flatness', 'flatness', 'flatness')]
  columns = [c for c in columns if c[0] in metrics]
  markdown = (f'3D consistency of {result["scenes"]} scene(s) from {source}, each view against '
              f'its {neighbors} nearest.\n\n' + report.markdown_table(
                  ['scenes'] + [c[2] for c in columns],
                  [[result['scenes']] + [mean[m][k] for m, k, _ in columns]]))
  out = out or (scenes_dir if scenes_dir is not None else 'eval_3d')
  paths = report.write(out, 'eval_3d', result, markdown)
  return {**result, 'paths': list(paths)}, markdown


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'eval-3d takes no positional arguments, got {argv[1:]}')
  try:
    result, markdown = run(scenes_dir=_SCENES.value, synthetic=_SYNTHETIC.value,
                           num_scenes=_NUM_SCENES.value, neighbors=_NEIGHBORS.value,
                           metrics=tuple(_METRICS.value), out=_OUT.value)
  except (ValueError, FileNotFoundError, ImportError) as e:
    raise app.UsageError(str(e)) from e
  print(markdown)
  print('wrote ' + ' and '.join(result['paths']))
