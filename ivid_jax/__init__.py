"""ivid-jax: IVID (3D-aware image generation with 2D diffusion models) in JAX/Flax."""

# Before anything initialises JAX: the project's one XLA:CPU default (see its docstring).
from ivid_jax.models import cpu_defaults as _cpu_defaults

_cpu_defaults.apply()

# The project's public repository: setup.py's `url`, the datasets' homepage and the Colab
# notebooks' install source (a test checks they agree). Change it here when the project moves.
REPOSITORY_URL = 'https://github.com/ivid-jax/ivid-jax'
