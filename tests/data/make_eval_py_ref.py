"""Writes tests/data/eval_py_real_ref.npz: the authors' eval.py preprocessing of real images.

  python tests/data/make_eval_py_ref.py --authors_src=DIR   # a checkout of JeffreyXiang/ivid

Runs their `sample_from_real_image` itself (eval.py: glob, CMYK -> RGB,
`center_crop_and_resize` to 32 px with PIL's Lanczos, PNG) on one folder per
picture, and reads each PNG back as torch-fidelity's `ImagesPathDataset` does
(`Image.open(path).convert('RGB')`). eval.py imports `torch_fidelity` at module
level for its metrics, which this function does not use: a stand-in module
lets the import through without torch. The pictures are stored as the file
bytes eval.py read (PNG; CMYK as JPEG, which PNG cannot hold), so the test
feeds the same files to ivid-jax. See tests/data/README.md for the keys.
"""

import argparse
import io
import os
import sys
import tempfile
import types

import numpy as np
from PIL import Image

SIZE = 32
# (name, PIL mode, height, width, file format): wide, tall, greyscale, CMYK, alpha, palette.
CASES = (('rgb_wide', 'RGB', 90, 151, 'PNG'), ('rgb_tall', 'RGB', 151, 90, 'PNG'),
         ('grey', 'L', 77, 64, 'PNG'), ('cmyk', 'CMYK', 64, 100, 'JPEG'),
         ('rgba', 'RGBA', 100, 100, 'PNG'), ('palette', 'P', 60, 81, 'PNG'))


def picture(h: int, w: int, seed: int) -> np.ndarray:
  """A fixed uint8 [h, w, 3] picture: gradients, stripes and noise (Lanczos sees all three)."""
  rng = np.random.RandomState(seed)
  y, x = np.mgrid[0:h, 0:w]
  base = np.stack([x * 255 / w, y * 255 / h, (x + y) % 37 * 7], -1)
  return np.clip(base + rng.uniform(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--authors_src', required=True, help='checkout of JeffreyXiang/ivid')
  parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__),
                                                    'eval_py_real_ref.npz'))
  args = parser.parse_args()
  sys.modules.setdefault('torch_fidelity', types.SimpleNamespace(calculate_metrics=None))
  sys.path.insert(0, args.authors_src)
  import eval as authors_eval  # pylint: disable=g-import-not-at-top,redefined-builtin

  out = {'size': np.int32(SIZE), 'names': np.asarray([c[0] for c in CASES])}
  for i, (name, mode, h, w, fmt) in enumerate(CASES):
    buffer = io.BytesIO()
    Image.fromarray(picture(h, w, i)).convert(mode).save(buffer, format=fmt)
    data = buffer.getvalue()
    with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as dst:
      with open(os.path.join(src, f'{name}.{"jpg" if fmt == "JPEG" else "png"}'), 'wb') as f:
        f.write(data)
      authors_eval.sample_from_real_image(src, dst, SIZE)
      written = sorted(os.listdir(dst))
      assert written == ['00000.png'], written  # eval.py prints and skips what fails
      with Image.open(os.path.join(dst, written[0])) as image:
        out[f'{name}_out'] = np.asarray(image.convert('RGB'))
    out[f'{name}_file'] = np.frombuffer(data, np.uint8)
    out[f'{name}_ext'] = np.asarray('jpg' if fmt == 'JPEG' else 'png')
  np.savez_compressed(args.out, **out)
  print(f'wrote {args.out}: {", ".join(c[0] for c in CASES)}')


if __name__ == '__main__':
  main()
