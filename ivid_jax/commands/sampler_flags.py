"""The sampler's flags, defined once for `ivid-jax sample` and `ivid-jax demo`. Imports no JAX.

Every flag here defaults to None, "the preset's value"; `--preset` picks the preset (each
command has its own default one) and an explicit flag overrides it:
  authors  the authors' settings (sample's default): DDPM view 0, DDIM 50, eta 0, unclipped,
           x_0 edits 0.1 / 0.2 (reference 6.3);
  demo     the settings for the shipped briefly trained networks (demo's default): DDIM 50 /
           20 with eta 1, clipped x_0, the shown pixels replaced (colour and depth) in every
           step, the last one included.
"""

from __future__ import annotations

from typing import Any, Sequence

from absl import flags

CLASS_MODES = ('mod', 'uniform', 'random')

# Each preset sets every sampler flag; erode_rgb None means "the authors' 3 px at 128 px scaled
# to the networks' resolution" (chain.for_resolution).
PRESETS: dict[str, dict[str, Any]] = {
    'authors': dict(seeds='0-7', classes='mod', steps_uncond=1000, steps_cond=50,
                    eta_uncond=0.0, eta_cond=0.0, guidance=3.0, clip_denoised=False,
                    erode_rgb=None, replace_rgb=0.1, replace_rgb_last=False, replace_depth=0.2,
                    batch_size=8),
    # The shipped networks are briefly trained: eta 0 draws them speckled views, unclipped x_0
    # overshoots, and their G_c barely copies its condition by itself (data/models/MODEL_CARD.md).
    'demo': dict(seeds='0-2', classes='spheres,tabletop,room', steps_uncond=50, steps_cond=20,
                 eta_uncond=1.0, eta_cond=1.0, guidance=3.0, clip_denoised=True, erode_rgb=None,
                 replace_rgb=1.0, replace_rgb_last=True, replace_depth=1.0, batch_size=8),
}


def _presets_help() -> str:
  def show(v):
    return 'auto' if v is None else str(v)
  return '; '.join(f'{name}: ' + ', '.join(f'{k}={show(v)}' for k, v in values.items())
                   for name, values in PRESETS.items())


_PRESET = flags.DEFINE_enum('preset', None, list(PRESETS), 'The sampler settings every flag '
                            'below defaults to (default: the command\'s own; explicit flags '
                            f'override it). {_presets_help()}.')
_SEEDS = flags.DEFINE_string('seeds', None, 'Seeds, one scene each: e.g. 0-7,12. A seed always '
                             'gives the same scene (whatever the batch size or device count).')
_CLASSES = flags.DEFINE_string(
    'classes', None, 'mod (seed % number of classes), uniform, random, or a comma list of labels '
    'or synthetic_rgbd class names (spheres, boxes, mixed, tabletop, room), one per seed or one '
    'for all; -1 is the null class.')
_STEPS_UNCOND = flags.DEFINE_integer('steps_uncond', None, 'Steps for view 0: the schedule '
                                     'length (1000) runs DDPM, fewer run DDIM.', lower_bound=1)
_STEPS_COND = flags.DEFINE_integer('steps_cond', None, 'DDIM steps of every further view.',
                                   lower_bound=1)
_ETA_UNCOND = flags.DEFINE_float('eta_uncond', None, 'DDIM eta of view 0 when it runs DDIM (0: '
                                  "deterministic, the authors'; 1, stochastic, draws briefly "
                                  "trained networks' views without speckle).", lower_bound=0.0)
_ETA_COND = flags.DEFINE_float('eta_cond', None, 'DDIM eta of every further view.',
                               lower_bound=0.0)
_GUIDANCE = flags.DEFINE_float('guidance', None, 'Classifier-free guidance w: (1 + w) eps_c - w '
                               'eps_null (the authors: 3 for pictures, 0.5 for metrics).')
_CLIP = flags.DEFINE_bool('clip_denoised', None, 'Clip the predicted x_0 to [-1, 1] in every '
                          "step (ADM's default; the authors sample without it). Helps briefly "
                          'trained networks, such as the shipped synthetic ones.')
_ERODE = flags.DEFINE_integer('erode_rgb', None, "Radius (pixels) of the conditions' RGB erosion; "
                              "default: the authors' 3 px at 128 px scaled to the networks' "
                              'resolution (1 at 32 px); the discontinuity tolerances scale '
                              'likewise (chain.for_resolution).', lower_bound=1)
_REPLACE_RGB = flags.DEFINE_float('replace_rgb', None, 'x_0 edit: colour of the shown pixels := '
                                   'this blend of the condition in every DDIM step but the last '
                                   '(unless --replace_rgb_last); 1.0 replaces it.',
                                   lower_bound=0.0, upper_bound=1.0)
_REPLACE_RGB_LAST = flags.DEFINE_bool('replace_rgb_last', None, 'The colour replacement on the '
                                      'final DDIM step too (the authors skip it there).')
_REPLACE_DEPTH = flags.DEFINE_float('replace_depth', None, 'x_0 edit: depth of the shown pixels '
                                     ':= this blend of the condition in every DDIM step.',
                                     lower_bound=0.0, upper_bound=1.0)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, 'Scenes per chain call (rounded up to a '
                                   'multiple of the device count).', lower_bound=1)

_FLAGS = {'seeds': _SEEDS, 'classes': _CLASSES, 'steps_uncond': _STEPS_UNCOND,
          'steps_cond': _STEPS_COND, 'eta_uncond': _ETA_UNCOND, 'eta_cond': _ETA_COND,
          'guidance': _GUIDANCE, 'clip_denoised': _CLIP, 'erode_rgb': _ERODE,
          'replace_rgb': _REPLACE_RGB, 'replace_rgb_last': _REPLACE_RGB_LAST,
          'replace_depth': _REPLACE_DEPTH, 'batch_size': _BATCH_SIZE}
assert all(set(p) == set(_FLAGS) for p in PRESETS.values())


def preset_name(default: str) -> str:
  """--preset, or the command's `default` preset."""
  return _PRESET.value or default


def explicit() -> set[str]:
  """The sampler flags given on the command line (not taken from the preset)."""
  return {name for name, holder in _FLAGS.items() if holder.value is not None}


def values(default: str) -> dict[str, Any]:
  """Every sampler setting: the preset's (--preset, else `default`), explicit flags over it."""
  out = dict(PRESETS[preset_name(default)])
  out.update({name: holder.value for name, holder in _FLAGS.items() if holder.value is not None})
  return out


def class_spec(spec: str | None) -> str | list[int | str] | None:
  """A --classes value: a mode ('mod', 'uniform', 'random'), or its entries (labels as ints,
  class names as strings); None stays None. Raises ValueError on an empty entry list."""
  if spec is None:
    return None
  spec = spec.strip()
  if spec in CLASS_MODES:
    return spec
  entries = [c.strip() for c in spec.split(',') if c.strip()]
  if not entries:
    raise ValueError(f'--classes={spec!r}: give {", ".join(CLASS_MODES)} or labels/class names')
  return [int(c) if c.lstrip('-').isdigit() else c for c in entries]


def class_labels(entries: Sequence[int | str], num_classes: int | None) -> list[int]:
  """Class names of synthetic_rgbd -> labels; labels pass through.

  Raises:
    ValueError: an unknown name, or names for networks that are not synthetic_rgbd's.
  """
  from ivid_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  labels = []
  for c in entries:
    if isinstance(c, str):
      try:
        labels.append(synthetic.class_label(c, num_classes))
      except ValueError as e:
        raise ValueError(f'--classes: {e}') from e
    else:
      labels.append(c)
  return labels


def chain_settings(opts: dict[str, Any], image_size: int):
  """The chain's Settings from `values()` at the networks' resolution (chain.for_resolution)."""
  from ivid_jax.sampling import chain  # pylint: disable=g-import-not-at-top
  extra = {} if opts['erode_rgb'] is None else {'erode_rgb': opts['erode_rgb']}
  return chain.for_resolution(image_size, steps_uncond=opts['steps_uncond'],
                              steps_cond=opts['steps_cond'], clip_denoised=opts['clip_denoised'],
                              eta_uncond=opts['eta_uncond'], eta=opts['eta_cond'],
                              replace_rgb=opts['replace_rgb'],
                              replace_rgb_last=opts['replace_rgb_last'],
                              replace_depth=opts['replace_depth'], **extra)
