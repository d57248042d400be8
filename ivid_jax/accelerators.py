"""Published per-chip peaks of the accelerators the dry runs are turned into plans for.

Each figure is the vendor's own, per chip (a TPU v4 or v5p chip is two
TensorCores shown as one JAX device; v5e is one), dense (no 2:4 sparsity), at
the precision named. They are upper bounds: a real step reaches a fraction of
them (the utilisation), which is why every time computed from them is an
estimate.
"""

from __future__ import annotations

from typing import NamedTuple


class Accelerator(NamedTuple):
  """One chip.

  peak_flops: dense FLOP/s at `precision` (a multiply-add is 2 FLOPs).
  hbm_bandwidth: bytes/s of its high-bandwidth memory.
  hbm_bytes: its memory capacity.
  """
  name: str
  peak_flops: float
  precision: str
  hbm_bandwidth: float
  hbm_bytes: float
  source: str


TERA, GIGA, GIB = 1e12, 1e9, 2.0 ** 30

# The accelerators a user would rent for the ImageNet-128 configs.
TARGETS: tuple[Accelerator, ...] = (
    Accelerator('TPU v4', 275 * TERA, 'bf16', 1200 * GIGA, 32 * GIB,
                'cloud.google.com/tpu/docs/v4: 275 TFLOPs bf16; HBM2 32 GiB, 1200 GBps'),
    Accelerator('TPU v5e', 197 * TERA, 'bf16', 819 * GIGA, 16 * GIGA,
                'cloud.google.com/tpu/docs/v5e: 197 TFLOPs bf16; HBM2 16 GB, 819 GBps'),
    Accelerator('TPU v5p', 459 * TERA, 'bf16', 2765 * GIGA, 95 * GIGA,
                'cloud.google.com/tpu/docs/v5p: 459 TFLOPs bf16; HBM2e 95 GB, 2765 GBps'),
    Accelerator('H100 SXM', 989 * TERA, 'bf16', 3350 * GIGA, 80 * GIGA,
                'nvidia.com/en-us/data-center/h100: 1,979 TFLOPS bf16 with sparsity (989 '
                'dense); HBM3 80 GB, 3.35 TB/s'),
)

# The authors' GPUs (their README: V100 and A100, batch 16 per GPU). Their ImageNet G_u
# trains in float32 (use_fp16 false): a V100 runs that on its CUDA cores; on an A100
# PyTorch runs cuDNN convolutions (most of the UNet's FLOPs) in TF32 by default.
AUTHORS: tuple[Accelerator, ...] = (
    Accelerator('V100 SXM2 32GB', 15.7 * TERA, 'fp32', 900 * GIGA, 32 * GIGA,
                'nvidia.com/en-us/data-center/v100: 15.7 TFLOPS fp32 (125 fp16 tensor); '
                'HBM2 32 GB, 900 GB/s'),
    Accelerator('A100 SXM 80GB', 156 * TERA, 'tf32', 2039 * GIGA, 80 * GIGA,
                'nvidia.com/en-us/data-center/a100: 156 TFLOPS tf32 (19.5 fp32, 312 bf16); '
                'HBM2e 80 GB, 2,039 GB/s'),
)
