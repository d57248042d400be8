"""Does the demo reach its quality targets? For given model files: one table.

  python benchmarks/demo_quality.py [--uncond=FILE --cond=FILE] [--num_scenes=10]
      [--measure=inpaint,reprojection,oracle,demo] [--ssaa=N --erode_rgb=N --far=D]
      [--textures=solid|mixed]

Defaults: the shipped synthetic models (data/models/), the demo's sampler
settings (DDIM 50 for view 0 and 20 for the others, eta 1, guidance 3, shown
pixels replaced by the condition in every step including the last, the authors'
erosion and tolerances scaled to the networks' resolution), scenes of the
synthetic_rgbd test split at the networks' resolution with the textures they
were trained on (rendered by the dataset's generator: no TFDS build).

(a) inpaint: the conditional network against OpenCV's Telea inpainting of the
    same condition, on the pixels the condition does not show (PSNR, SSIM),
    with `evaluation.ground_truth.score_synthetic_split`: every view 1..26 of
    the 3x9 order of --num_scenes test scenes, conditioned on the TRUE earlier
    views, drawn by the chain's own per-view step with the scene's class.
(b) reprojection: reprojection PSNR between neighbouring views (each view
    against its 2 nearest) of generated 3x9 scenes (scene i: class i % 5, seed
    i, as test scene i) and of the test scenes themselves at the same cameras;
    and of the test scenes drawn by an oracle chain (true view 0, a stand-in
    G_c whose x_0 is the true view, the same settings): what the sampler's
    aggregation and x_0 edits leave of the ground truth's consistency. Each
    is a mean over scenes of a mean over pairs of the pair's PSNR, an exact
    pair counting 100 dB; the median pair's PSNR and the share of exact pairs
    show how much of a mean those floors make (on solid-colour scenes, much).
oracle: the last two alone (no networks run): the ground truth's reprojection
    and the oracle chain's, for trying the sampler settings that bound (b)
    (--ssaa, --erode_rgb, --far: the aggregate's supersampling, the RGB
    erosion, the far plane of the depth encoding).
(c) demo: the wall time of `ivid-jax demo` with its defaults, compilation
    included, in this process's first run (run it first: --measure=demo,...).
"""

from __future__ import annotations

import functools
import os
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from ivid_jax import images
from ivid_jax.data import synthetic
from ivid_jax.demos import scenes as demo
from ivid_jax.diffusion import gaussian
from ivid_jax.diffusion import schedules
from ivid_jax.evaluation import consistency
from ivid_jax.evaluation import ground_truth
from ivid_jax.evaluation import report
from ivid_jax.evaluation import scenes as scenes_lib
from ivid_jax.geometry import depth as depth_lib
from ivid_jax.sampling import aggregate
from ivid_jax.sampling import chain
from ivid_jax.sampling import sampler
from ivid_jax.sampling import scene_io

_UNCOND = flags.DEFINE_string('uncond', None, 'Unconditional model file (default: shipped).')
_COND = flags.DEFINE_string('cond', None, 'Conditional model file (default: shipped).')
_NUM_SCENES = flags.DEFINE_integer('num_scenes', 10, 'Test scenes for (a) and (b).')
_MEASURE = flags.DEFINE_list('measure', ['demo', 'inpaint', 'reprojection'],
                             'Which rows: demo, inpaint, reprojection, oracle.')
_STEPS_UNCOND = flags.DEFINE_integer('steps_uncond', demo.Options.steps_uncond, 'View 0 steps.')
_STEPS_COND = flags.DEFINE_integer('steps_cond', demo.Options.steps_cond, 'Further views steps.')
_ETA_UNCOND = flags.DEFINE_float('eta_uncond', demo.Options.eta_uncond, 'View 0 DDIM eta.')
_ETA_COND = flags.DEFINE_float('eta_cond', demo.Options.eta_cond, 'Further views DDIM eta.')
_GUIDANCE = flags.DEFINE_float('guidance', demo.Options.guidance, 'Guidance w.')
_CLIP = flags.DEFINE_bool('clip_denoised', demo.Options.clip_denoised, 'Clip x_0 in every step.')
_REPLACE_RGB = flags.DEFINE_float('replace_rgb', demo.Options.replace_rgb, 'x_0 colour edit.')
_REPLACE_RGB_LAST = flags.DEFINE_bool('replace_rgb_last', demo.Options.replace_rgb_last,
                                      'x_0 colour edit on the final step too.')
_REPLACE_DEPTH = flags.DEFINE_float('replace_depth', demo.Options.replace_depth, 'x_0 depth edit.')
_TEXTURES = flags.DEFINE_enum('textures', None, ['solid', 'mixed'],
                              "Test scenes' textures (default: the networks' training data's).")
_ERODE_RGB = flags.DEFINE_integer('erode_rgb', None, "Conditions' RGB erosion (default: scaled).")
_SSAA = flags.DEFINE_integer('ssaa', chain.Settings().ssaa, "The aggregate's supersampling.")
_FAR = flags.DEFINE_float('far', chain.Settings().far,
                          "Far plane of the views' depth encoding (--measure=oracle only).")


def _inpaint(nets, settings, truth):
  """(a): mean scores of the model and of Telea over the test scenes."""

  @jax.jit
  def sample(params, schedule, condition, key, label):
    net = chain.Network(nets.cond.eps_fn, params, schedule)
    cond = aggregate.Condition(**{k: condition[k] for k in aggregate.Condition._fields})
    keys = jax.random.split(key, cond.color.shape[0])
    classes = None if nets.num_classes is None else jnp.full((1,), label, jnp.int32)
    # The chain's own step for a further view (the view index only enters its keys).
    step = lambda k, c: chain.next_view(
        net, k, classes, c, jnp.int32(1), settings)[0]
    return jax.vmap(step)(keys, cond) / 2.0 + 0.5

  per_scene = []
  for i, scene in enumerate(truth):
    label = jnp.int32(i % synthetic.NUM_CLASSES)  # test scene i has class i % 5
    fn = lambda c, k, label=label: sample(nets.cond.params, nets.cond.schedule, c, k, label)
    per_scene.append(ground_truth.score_synthetic_split(
        fn, scenes=[scene], seed=1000 + i,
        aggregate_fn=functools.partial(chain.view_condition, s=settings)))
  mean = lambda who, key: float(np.nanmean([s[who][key] for s in per_scene]))
  return {who: {k: mean(who, k) for k in per_scene[0][who]} for who in ('model', 'telea')}


def _reprojection(nets, settings, truth, folder):
  """(b): mean reprojection PSNR of generated scenes and of the true ones."""
  labels = [i % synthetic.NUM_CLASSES for i in range(len(truth))] if nets.num_classes else None
  paths = []
  for batch in sampler.generate(nets, range(len(truth)), viewset='3x9', classes=labels,
                                batch_size=4, settings=settings):
    for scene, _ in scene_io.scenes_from_batch(batch, settings):
      paths.append(scene_io.write_scene(os.path.join(folder, f'{len(paths)}.npz'), scene))
  generated = consistency.score_scenes([scenes_lib.read_scene(p) for p in paths],
                                       metrics=('reprojection',))['mean']['reprojection']
  return (generated,) + _truth_and_oracle(settings, truth)


def _truth_and_oracle(settings, truth):
  """Mean reprojection scores of the true scenes and of the oracle chain's drawing of them."""
  true = ground_truth.consistency_ceilings(truth, tsed=False)['reprojection']
  oracle = consistency.score_scenes(_oracle_scenes(settings, truth),
                                    metrics=('reprojection',))['mean']['reprojection']
  return true, oracle


def _oracle_eps(aux, key, x_t, t):
  """eps of a perfect G_c: its x_0 is the true view `aux['view']` (aux['params']: the views)."""
  del key
  x0 = jax.lax.dynamic_index_in_dim(aux['params'], aux['view'], keepdims=True)
  return gaussian.predict_eps(_ORACLE_SCHEDULE, x_t, t, x0)


_ORACLE_SCHEDULE = schedules.make_schedule()


def _oracle_scenes(settings, truth):
  """The test scenes drawn by the chain with a perfect G_c and the same settings.

  View 0 is the true one; every further view comes from the chain's own step with
  a stand-in network that knows the true view, so what remains of the ground
  truth's consistency is what the sampler settings (the aggregation and the x_0
  edits) leave of it.
  """
  out = []
  for i, scene in enumerate(truth):
    views = jnp.asarray(ground_truth.sampler_views(scene, settings.near, settings.far))
    net = chain.Network(_oracle_eps, views * 2.0 - 1.0, _ORACLE_SCHEDULE)
    got = chain.chain(None, net, sampler.scene_keys([i]), None, jnp.asarray(scene.modelview)[None],
                      views[None, 0], image_size=views.shape[1], settings=settings)
    v = np.asarray(got.views[0])  # stored as the generated scenes are (scene_io)
    depth = np.asarray(depth_lib.linearize_depth(v[..., 3], settings.near, settings.far))
    out.append(scenes_lib.Scene(images.to_uint8(v[..., :3], 'truncate'), depth, scene.modelview,
                                name=f'oracle {scene.name}'))
  return out


def _pair_rows(who, scores, true):
  """The per-pair PSNRs' median and exact share: a mean over pairs counts an exact pair at the
  summary's 100 dB floor, and on solid-colour scenes many true pairs are exact."""
  return [[f"(b) the median pair's reprojection PSNR, {who} vs ground truth",
           scores['psnr_median'], true['psnr_median'],
           scores['psnr_median'] - true['psnr_median'], ''],
          [f'(b) share of neighbour pairs that reproject exactly, {who} vs ground truth',
           scores['exact_pairs'], true['exact_pairs'],
           scores['exact_pairs'] - true['exact_pairs'], '']]


def main(argv):
  del argv
  if _FAR.value != chain.Settings().far and set(_MEASURE.value) != {'oracle'}:
    raise app.UsageError(f'--far={_FAR.value}: the networks draw depth with the far plane '
                         f'{chain.Settings().far} they were trained with; another one is only '
                         'for --measure=oracle (no networks run)')
  uncond = _UNCOND.value or demo.shipped_model('uncond')
  cond = _COND.value or demo.shipped_model('cond')
  nets = demo.load_networks(uncond, cond, _GUIDANCE.value)
  settings = demo.chain_settings(demo.Options(steps_uncond=_STEPS_UNCOND.value,
                                              steps_cond=_STEPS_COND.value,
                                              eta_uncond=_ETA_UNCOND.value,
                                              eta_cond=_ETA_COND.value,
                                              clip_denoised=_CLIP.value,
                                              replace_rgb=_REPLACE_RGB.value,
                                              replace_rgb_last=_REPLACE_RGB_LAST.value,
                                              replace_depth=_REPLACE_DEPTH.value,
                                              erode_rgb=_ERODE_RGB.value),
                                 nets.image_size)._replace(ssaa=_SSAA.value, far=_FAR.value)
  textures = _TEXTURES.value or demo.training_textures(uncond)
  rows = []
  if 'demo' in _MEASURE.value:
    with tempfile.TemporaryDirectory() as folder:
      start = time.time()
      result = demo.run_demo(folder, uncond=uncond, cond=cond, progress=False, log=None)
      wall = time.time() - start
    rows.append(['(c) `ivid-jax demo` wall time, s (defaults, compilation included)',
                 wall, '', '', '<= 300'])
    rows.append(['(c) of which sampling (view 0 + views 1-26), s',
                 result.times['view 0 (G_u)'] + result.times['views 1-26 (G_c)'], '', '', ''])
  truth = ground_truth.synthetic_scenes(nets.image_size, 'test', 0, _NUM_SCENES.value,
                                        textures=textures)
  if 'inpaint' in _MEASURE.value:
    out = _inpaint(nets, settings, truth)
    for key, name in (('psnr_inpainted', 'PSNR'), ('ssim_inpainted', 'SSIM')):
      rows.append([f'(a) {name} on inpainted pixels, model vs Telea ({len(truth)} scenes x 26 '
                   'views)', out['model'][key], out['telea'][key],
                   out['model'][key] - out['telea'][key], 'model > Telea'])
    rows.append(['(a) PSNR on all pixels, model vs Telea', out['model']['psnr_all'],
                 out['telea']['psnr_all'], out['model']['psnr_all'] - out['telea']['psnr_all'],
                 ''])
  if 'reprojection' in _MEASURE.value:
    with tempfile.TemporaryDirectory() as folder:
      generated, true, oracle = _reprojection(nets, settings, truth, folder)
    rows.append([f'(b) reprojection PSNR of neighbours, generated vs ground truth '
                 f'({len(truth)} scenes)', generated['psnr'], true['psnr'],
                 generated['psnr'] - true['psnr'], 'within 3 dB'])
    rows.append(['(b) the same, generated vs an oracle chain (a G_c that returns the true view, '
                 'same settings)', generated['psnr'], oracle['psnr'],
                 generated['psnr'] - oracle['psnr'], ''])
    rows += _pair_rows('generated', generated, true)
    rows.append(['(b) overlap of neighbours, generated vs ground truth', generated['coverage'],
                 true['coverage'], generated['coverage'] - true['coverage'], ''])
  if 'oracle' in _MEASURE.value:
    true, oracle = _truth_and_oracle(settings, truth)
    rows.append([f'(b) reprojection PSNR of neighbours, oracle chain vs ground truth '
                 f'({len(truth)} scenes)', oracle['psnr'], true['psnr'],
                 oracle['psnr'] - true['psnr'], ''])
    rows += _pair_rows('oracle chain', oracle, true)
    rows.append(['(b) depth within 2% of neighbours, oracle chain vs ground truth',
                 oracle['depth_inliers'], true['depth_inliers'],
                 oracle['depth_inliers'] - true['depth_inliers'], ''])
  print(f'# demo quality: {os.path.basename(uncond)} + {os.path.basename(cond)}, '
        f'{nets.image_size} px synthetic_rgbd test split ({textures} textures), DDIM '
        f'{settings.steps_uncond}/{settings.steps_cond} (eta {settings.eta_uncond}/'
        f'{settings.eta}), guidance {_GUIDANCE.value}, x_0 edits '
        f'{settings.replace_rgb}/{settings.replace_depth}'
        f'{" (colour on the last step too)" if settings.replace_rgb_last else ""}, '
        f'erosion {settings.erode_rgb}, ssaa {settings.ssaa}, far {settings.far}; '
        f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
        f'JAX {jax.__version__} on {jax.devices()[0].platform}\n')
  print(report.markdown_table(['measurement', 'ivid-jax', 'reference', 'difference', 'target'],
                              rows))


if __name__ == '__main__':
  app.run(main)
