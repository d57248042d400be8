"""ivid-jax: 3D-aware image generation with 2D diffusion models (IVID) in JAX/Flax."""

# Before anything initialises JAX: the project's one XLA:CPU default (see its docstring).
from ivid_jax.models import cpu_defaults as _cpu_defaults

_cpu_defaults.apply()
