"""Times the authors' AggregationRenderer (moderngl) on meshes from benchmarks/render.py.

  python benchmarks/_authors_render.py AUTHORS_SRC MESHES.npz REPEATS

Run by benchmarks/render.py in an interpreter with moderngl, PyGLM and easydict
(their renderer's imports); prints one line: frames per second. Only their
rgbd_3d/moderngl_renderer.py is loaded (by path: their package __init__ pulls in
torch and OpenCV for other tools), exactly as render.py drives it: 640 px
(SSAA 5), near 0.1, far 200, all views per frame.
"""

import importlib.util
import os
import sys
import time

import glm
import numpy as np
from easydict import EasyDict as edict


def main(src, meshes_path, repeats):
  spec = importlib.util.spec_from_file_location(
      'moderngl_renderer', os.path.join(src, 'rgbd_3d', 'moderngl_renderer.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  d = np.load(meshes_path)
  mat = lambda m: glm.mat4(*np.asarray(m, np.float32).T.reshape(-1).tolist())  # column-major
  meshes = [edict(faces=d['faces'][i], modelview=mat(d['modelview'][i]),
                  vertices=edict(position=d['position'][i], normal=d['normal'][i],
                                 uv=d['uv'][i], flag=d['flag'][i][:, None]))
            for i in range(len(d['faces']))]
  colors = [c for c in d['color']]
  frames = [mat(m) for m in d['targets']]
  size = int(d['size'])
  renderer = module.AggregationRenderer(size * 5, size, near=0.1, far=200, device=0,
                                        max_views=max(27, len(meshes)))
  renderer.render(meshes, colors, frames[:1])
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    renderer.render(meshes, colors, frames)
    times.append(time.perf_counter() - start)
  print(len(frames) / float(np.median(times)))


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
