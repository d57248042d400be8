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
(per scene and mean) and eval_3d.md (default --out: outputs/eval-3d). Without
--metrics all three are scored, TSED only when OpenCV imports (else it is left
out with a note). The scoring lives in `ivid_jax.evaluation.eval_3d`.
"""

from __future__ import annotations

from absl import app
from absl import flags

from ivid_jax.commands import outputs

_SCENES = flags.DEFINE_string('scenes', None, 'A sampler output folder (its scenes/) or a folder '
                              'of scene .npz files.')
_SYNTHETIC = flags.DEFINE_string('synthetic', None, 'Ground-truth scenes of synthetic_rgbd, '
                                 'r<RES>[:SPLIT] (e.g. r64:test), rendered without a TFDS build.')
_NUM_SCENES = flags.DEFINE_integer('num_scenes', None, 'Scenes scored (default: all of --scenes, '
                                   '8 of --synthetic).', lower_bound=1)
_NEIGHBORS = flags.DEFINE_integer('neighbors', 2, 'Each view is scored against its k nearest '
                                  'views (by optical-axis angle), both directions.', lower_bound=1)
_METRICS = flags.DEFINE_list('metrics', None, 'Which metrics: reprojection, tsed, flatness '
                             "(default: all three, tsed only when OpenCV imports: pip install "
                             "'ivid-jax[eval]').")
_OUT = flags.DEFINE_string('out', outputs.default_out('eval-3d'), 'Report folder (refused if it '
                           'holds files, unless --overwrite).')
flags.declare_key_flag('overwrite')

_CHOICES = ('reprojection', 'tsed', 'flatness')  # consistency.METRICS, without importing JAX


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'eval-3d takes no positional arguments, got {argv[1:]}')
  if (_SCENES.value is None) == (_SYNTHETIC.value is None):
    raise app.UsageError('eval-3d needs exactly one of --scenes=DIR and '
                         '--synthetic=r<RES>[:split]')
  unknown = set(_METRICS.value or ()) - set(_CHOICES)
  if unknown:
    raise app.UsageError(f'unknown --metrics {sorted(unknown)}; choose from {_CHOICES}')
  from ivid_jax.evaluation import eval_3d  # pylint: disable=g-import-not-at-top
  if _SYNTHETIC.value is not None:
    try:
      eval_3d.parse_synthetic(_SYNTHETIC.value)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
  out = outputs.check_out(_OUT.value)
  result, markdown = eval_3d.run(scenes_dir=_SCENES.value, synthetic=_SYNTHETIC.value,
                                 num_scenes=_NUM_SCENES.value, neighbors=_NEIGHBORS.value,
                                 metrics=_METRICS.value, out=out)
  for note in result['notes']:
    print(note)
  print(markdown)
  print('wrote ' + ' and '.join(result['paths']))
