"""Preview grids during training: DDIM samples of the EMA network, RGB and colourised depth.

`uncond`: N samples from fixed noise, labels 0, 1, 2, ... (mod the class
count), classifier-free guided; each sample is a column [RGB; depth].
`cond`: N fixed examples of the training set, each warped to its fixed random
camera and back (the training pair); each row is condition | sample | target,
RGB then depth, holes of the condition in magenta. The inputs are the same at
every preview, so the grids show the network improving.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import numpy as np
from jax import Array

from ivid_jax import images
from ivid_jax.data import conditional
from ivid_jax.data import pipeline
from ivid_jax.diffusion import guidance
from ivid_jax.diffusion import samplers
from ivid_jax.diffusion import schedules

_HOLE = np.array([1.0, 0.0, 1.0], np.float32)  # magenta


def to_images(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """RGBD in [-1, 1] [N, H, W, 4] -> (RGB, colourised depth), each [N, H, W, 3] in [0, 1].

  Depth is min-max normalised per image (relative depth is what shows), then inferno,
  near bright, as the sampler's depth grids.
  """
  x = np.asarray(x, np.float32)
  return (np.clip((x[..., :3] + 1.0) / 2.0, 0.0, 1.0),
          images.colorize_depth(x[..., 3], normalize=True))


def tile(rows: list[list[np.ndarray]]) -> np.ndarray:
  """A grid of equally sized [H, W, 3] images (rows of columns), 2 px white lines between."""
  tiles = [image for row in rows for image in row]
  starts = np.cumsum([0] + [len(row) for row in rows])
  index = [list(range(s, s + len(row))) for s, row in zip(starts, rows)]
  return images.grid(np.stack(tiles), index, border=False, background=1.0)


class Inputs(NamedTuple):
  """The fixed inputs of the previews (numpy). cond only: y, mask, mask_rgb, target."""
  noise: np.ndarray  # [N, H, W, 4]
  labels: np.ndarray | None  # int32 [N]
  y: np.ndarray | None = None
  mask: np.ndarray | None = None
  mask_rgb: np.ndarray | None = None
  target: np.ndarray | None = None


def make_inputs(*, kind: str, num: int, image_size: int, num_classes: int | None, seed: int,
                source: pipeline.Source | None = None, warp: dict[str, Any] | None = None
                ) -> Inputs:
  """Fixed preview inputs from `seed` (and, for cond, examples 0..num-1 of `source`)."""
  # numpy, not jax.random: no compilation for a one-off draw.
  noise = np.random.default_rng([seed, 7]).standard_normal(
      (num, image_size, image_size, 4)).astype(np.float32)
  labels = None if num_classes is None else (np.arange(num) % num_classes).astype(np.int32)
  if kind == 'uncond':
    return Inputs(noise, labels)
  num = min(num, len(source))
  examples = [source[i] for i in range(num)]
  from ivid_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  x0 = np.stack([preprocess.to_model_input(np.asarray(e['rgb']), np.asarray(e['depth'],
                                                                           np.float32))
                 for e in examples])
  extra = [pipeline.example_camera_and_rng(seed, 0, i) for i in range(num)]
  camera = jax.tree.map(lambda *xs: np.stack(xs), *[e['camera'] for e in extra])
  keys = np.stack([e['rng'] for e in extra])
  pair = jax.tree.map(np.asarray, conditional.make_training_pair(keys, x0, camera,
                                                                 **(warp or {})))
  if labels is not None:
    labels = np.asarray([e.get('label', -1) for e in examples], np.int32)
    labels = np.where((labels >= 0) & (labels < num_classes), labels, -1).astype(np.int32)
  return Inputs(noise[:num], labels, pair['y'], pair['mask'], pair['mask_rgb'], pair['x0'])


@functools.partial(jax.jit, static_argnames=('model', 'inpaint', 'guidance_w', 'steps',
                                             'schedule_name', 'num_steps', 'clip_denoised', 'eta'))
def _sample(params, inputs: dict[str, Array], key: Array, *, model, inpaint: bool,
            guidance_w: float, steps: int, schedule_name: str, num_steps: int,
            clip_denoised: bool, eta: float) -> Array:
  schedule = schedules.make_schedule(schedule_name, num_steps)
  eps_fn = guidance.make_eps_fn(model, guidance_w, inpaint)
  aux = {'params': params, 'classes': inputs.get('labels')}
  if inpaint:
    aux.update(y=inputs['y'], mask=inputs['mask'], mask_rgb=inputs['mask_rgb'])
  return samplers.ddim_sample(eps_fn, aux, key, inputs['noise'], schedule, steps=steps,
                              eta=eta, clip_denoised=clip_denoised)


def sample(params: Any, inputs: Inputs, *, model: Any, kind: str, steps: int, guidance_w: float,
           schedule_name: str = 'linear', num_steps: int = 1000, sharding: Any = None,
           seed: int = 0, clip_denoised: bool = False, eta: float = 0.0) -> np.ndarray:
  """DDIM samples [N, H, W, 4] (numpy) of the network for the preview inputs (eta: DDIM's)."""
  arrays = {k: v for k, v in inputs._asdict().items() if v is not None and k != 'target'}
  if model.num_classes is None:
    arrays.pop('labels', None)
  if sharding is not None:  # every process passes the same values: a replicated global array
    arrays = jax.device_put(arrays, sharding)
  out = _sample(params, arrays, jax.random.key(seed), model=model, inpaint=kind == 'cond',
                guidance_w=float(guidance_w), steps=steps, schedule_name=schedule_name,
                num_steps=num_steps, clip_denoised=bool(clip_denoised), eta=float(eta))
  return np.asarray(jax.device_get(out))


def grid(samples: np.ndarray, inputs: Inputs, kind: str, per_row: int = 8) -> np.ndarray:
  """The preview picture [H', W', 3] in [0, 1] (module docstring)."""
  rgb, depth = to_images(samples)
  if kind == 'uncond':
    rows = []
    for start in range(0, len(rgb), per_row):
      rows.append(list(rgb[start:start + per_row]))
      rows.append(list(depth[start:start + per_row]))
    return tile(rows)
  c_rgb, c_depth = to_images(inputs.y)
  c_rgb = np.where(inputs.mask_rgb > 0.5, c_rgb, _HOLE)
  c_depth = np.where(inputs.mask > 0.5, c_depth, _HOLE)
  t_rgb, t_depth = to_images(inputs.target)
  return tile([[c_rgb[i], rgb[i], t_rgb[i], c_depth[i], depth[i], t_depth[i]]
               for i in range(len(rgb))])
