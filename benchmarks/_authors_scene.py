"""The authors' scene sampler (their inference/sample.py `sample_all`) on the CPU.

  python benchmarks/_authors_scene.py make-weights AUTHORS_SRC OUT_DIR
  python benchmarks/_authors_scene.py sample AUTHORS_SRC WEIGHTS_DIR STEPS_UNCOND STEPS_COND OUT_DIR

Runs in an interpreter with the authors' dependencies (torch, numpy, moderngl,
PyGLM, easydict, tqdm, imageio, opencv-python-headless, plyfile, pillow;
torchvision is stubbed when missing: only their grid saving uses it).

make-weights: two small networks of their own `AdmUnet2d` at 128 px (64
channels, mult 1,1,2,2, one res block, attention at 16 px, 10 classes and a
null class; 6.1M parameters each), G_u with 4 input channels and G_c with 10
(their conditional config's input), seeded (`torch.manual_seed` 0 and 1).
Every layer their `zero_module` zeroes (each res block's last conv, each
attention block's proj_out, the output conv) gets small seeded random values
(normal, std ZERO_STD) so the networks' outputs are not trivial. Writes per
network NAME.pt (their state dict), NAME.npz (the same tensors, what `ivid-jax
convert-checkpoint` reads without torch) and NAME.json (their whole config:
backbone and framework, as configs/rgbd_imagenet_adm_128_large_*.json).

sample: makes `torch.Tensor.cuda` and `torch.nn.Module.cuda` the identity and
`torch.randn(device='cuda')` draw on the CPU, imports their
inference/sample.py unchanged, builds their frameworks (ClassifierFreeGuidance,
InpaintCFG) around the networks as their `main` does, and runs `sample_all`
for one 3x9 scene (seed 0, class 3, guidance 3) with their command line's
defaults for the geometry (fov 45, near 0.6, far 5, atol = rtol 0.03,
erode_rgb 3), their 3x9 modelviews built as their `__main__` builds them, and
batchsize 1 (one scene; their default of 10 would open ten GL contexts).
Writes the scene with their `save_scene` (no grids: those need torchvision)
and prints one line of JSON: the seconds of `sample_all` and of the whole
script up to that point (imports included). The caller times the process.
"""

import json
import os
import sys
import time

_START = time.perf_counter()

ZERO_STD = 0.01  # std of the values given to the layers their zero_module zeroes
ZERO_MODULES = ('out_layers.3.', 'proj_out.', 'out.2.')  # what zero_module wraps in adm.py

BACKBONE = dict(image_size=128, in_channels=4, out_channels=4, model_channels=64,
                num_res_blocks=1, num_classes=10, has_null_class=True, channel_mult=[1, 1, 2, 2],
                attention_resolutions=[16], num_groups=32, num_heads=None, num_head_channels=64,
                dropout=0.0, use_fp16=False)
CONFIGS = {
    'uncond': dict(backbone=dict(name='AdmUnet2d', args=BACKBONE),
                   framework=dict(name='ClassifierFreeGuidance',
                                  args=dict(timesteps=1000, beta_schedule='linear',
                                            p_uncond=0.1))),
    'cond': dict(backbone=dict(name='AdmUnet2d', args=dict(BACKBONE, in_channels=10)),
                 framework=dict(name='InpaintCFG',
                                args=dict(timesteps=1000, beta_schedule='linear', p_uncond=0.1,
                                          p_uncond_img=0))),
}
SEED, CLASS, GUIDANCE = 0, 3, 3.0
GEOMETRY = dict(fov=45, near=0.6, far=5, atol=0.03, rtol=0.03, erode_rgb=3)  # their argparse


def _import_authors(src):
  sys.path.insert(0, src)
  sys.path.insert(0, os.path.join(src, 'inference'))  # their sample.py imports `utils` from there


def make_weights(src, out_dir):
  import numpy as np
  import torch
  _import_authors(src)
  import diffusion.backbones as backbones
  os.makedirs(out_dir, exist_ok=True)
  for seed, (name, cfg) in enumerate(CONFIGS.items()):
    torch.manual_seed(seed)
    net = getattr(backbones, cfg['backbone']['name'])(**cfg['backbone']['args'])
    gen = torch.Generator().manual_seed(1000 + seed)
    state = net.state_dict()
    filled = 0
    for key, value in state.items():
      if any(f'.{key}'.find(f'.{m}') >= 0 for m in ZERO_MODULES):
        assert not value.any(), f'{key} was expected to be zero-initialised'
        value.copy_(torch.randn(value.shape, generator=gen) * ZERO_STD)
        filled += 1
    torch.save(state, os.path.join(out_dir, f'{name}.pt'))
    np.savez(os.path.join(out_dir, f'{name}.npz'),
             **{k: v.detach().numpy() for k, v in state.items()})
    with open(os.path.join(out_dir, f'{name}.json'), 'w') as f:
      json.dump(cfg, f, indent=1)
    count = sum(p.numel() for p in net.parameters())
    print(json.dumps({'network': name, 'parameters': count, 'zero_init_tensors_filled': filled}))


def _cpu_cuda():
  """CUDA calls in their sampler -> the CPU (before importing it)."""
  import torch
  torch.Tensor.cuda = lambda self, *a, **k: self
  torch.nn.Module.cuda = lambda self, *a, **k: self
  randn = torch.randn

  def cpu_randn(*args, **kwargs):
    if str(kwargs.get('device', 'cpu')).startswith('cuda'):
      kwargs['device'] = 'cpu'
    return randn(*args, **kwargs)

  torch.randn = cpu_randn
  try:
    import torchvision  # noqa: F401  pylint: disable=unused-import
  except ImportError:
    import types
    stub = types.ModuleType('torchvision')
    stub.utils = types.ModuleType('torchvision.utils')
    sys.modules['torchvision'] = stub
    sys.modules['torchvision.utils'] = stub.utils


def _modelviews_3x9():
  """Their __main__'s 3x9 cameras, in generation order."""
  import glm
  import numpy as np
  yaws, pitches = [0.0], [0.0]
  for i in range(4):
    yaws += [(i + 1) * 0.15, -(i + 1) * 0.15]
  for i in range(1):
    pitches += [(i + 1) * 0.15, -(i + 1) * 0.15]
  return [glm.lookAt(glm.vec3(np.sin(yaw) * np.cos(pitch), np.sin(pitch),
                              np.cos(yaw) * np.cos(pitch)),
                     glm.vec3(0.0, 0.0, 0.0), glm.vec3(0.0, 1.0, 0.0))
          for yaw in yaws for pitch in pitches]


def sample(src, weights_dir, steps_uncond, steps_cond, out_dir):
  _cpu_cuda()
  import torch
  _import_authors(src)
  import importlib.util
  spec = importlib.util.spec_from_file_location('authors_sample',
                                                os.path.join(src, 'inference', 'sample.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  backbones, frameworks = module.backbones, module.frameworks
  fw = {}
  for name in ('uncond', 'cond'):
    with open(os.path.join(weights_dir, f'{name}.json')) as f:
      cfg = json.load(f)
    backbone = getattr(backbones, cfg['backbone']['name'])(**cfg['backbone']['args']).cuda()
    fw[name] = getattr(frameworks, cfg['framework']['name'])(backbone, **cfg['framework']['args'])
    backbone.load_state_dict(torch.load(os.path.join(weights_dir, f'{name}.pt'),
                                        map_location='cpu'))
  start = time.perf_counter()
  views = []
  process = module.sample_all(fw['uncond'], fw['cond'], [SEED], steps_uncond, steps_cond,
                              _modelviews_3x9(), classes=[CLASS], guidance=GUIDANCE, batchsize=1,
                              **GEOMETRY)
  for meshes, colors, samples, conds in process:
    views.append(samples.shape[0])
    os.makedirs(out_dir, exist_ok=True)
    module.save_scene(os.path.join(out_dir, f'scene_class{CLASS:03d}_seed{SEED:05d}.npz'),
                      meshes, colors)
  end = time.perf_counter()
  print(json.dumps({'sample_all_s': end - start, 'script_s': end - _START, 'views': views[0],
                    'torch': torch.__version__, 'threads': torch.get_num_threads()}))


if __name__ == '__main__':
  command, *args = sys.argv[1:]
  if command == 'make-weights':
    make_weights(*args)
  elif command == 'sample':
    sample(args[0], args[1], int(args[2]), int(args[3]), args[4])
  else:
    raise SystemExit(f'unknown command {command!r}')
