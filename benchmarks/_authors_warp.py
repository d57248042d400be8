"""Times the authors' forward_backward_warp (moderngl SimpleRenderer) on inputs from benchmarks/warp.py.

  python benchmarks/_authors_warp.py AUTHORS_SRC INPUTS.npz REPEATS

Run by benchmarks/warp.py in an interpreter with the authors' imports (torch,
moderngl, PyGLM, easydict, OpenCV, plyfile, pillow); prints one line: milliseconds
per image, the median over REPEATS passes through the images after one warm-up
pass. It drives their code as their WarpDataset does: one SimpleRenderer(3 x 128,
128, near 0.1, far 200), `rgbd_3d.utils.forward_backward_warp` per image with
padding = image size and their near/far (0.5 / 100).
"""

import sys
import time

import glm
import numpy as np


def main(src, inputs_path, repeats):
  sys.path.insert(0, src)
  import rgbd_3d  # pylint: disable=g-import-not-at-top
  d = np.load(inputs_path)
  images = d['rgbd'].astype(np.float32)
  mat = lambda m: glm.mat4(*np.asarray(m, np.float32).T.reshape(-1).tolist())  # column-major
  cams = [mat(m) for m in d['modelview1']]
  size = images.shape[1]
  renderer = rgbd_3d.SimpleRenderer(size * 3, size, near=0.1, far=200)

  def one_pass():
    for rgbd, cam in zip(images, cams):
      rgbd_3d.utils.forward_backward_warp(renderer, rgbd, cam, near=0.5, far=100, padding=size)

  one_pass()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    one_pass()
    times.append(time.perf_counter() - start)
  print(1e3 * float(np.median(times)) / len(images))


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
