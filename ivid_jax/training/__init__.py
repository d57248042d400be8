"""Training of both IVID networks: `train_and_evaluate(config, workdir)` and `load_params`."""

from ivid_jax.training.checkpoint import load_params
from ivid_jax.training.train import train_and_evaluate

__all__ = ['load_params', 'train_and_evaluate']
