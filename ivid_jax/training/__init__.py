"""Training of both IVID networks: `train_and_evaluate(config, workdir)` and `load_params`.

The two are imported on first use, so that `ivid_jax.training.parallel` can join a
multi-host run (`jax.distributed.initialize` must come before anything touches a
device) before the trainer's modules are imported.
"""

from typing import Any

__all__ = ['load_params', 'train_and_evaluate']


def __getattr__(name: str) -> Any:
  if name == 'train_and_evaluate':
    from ivid_jax.training.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
    return train_and_evaluate
  if name == 'load_params':
    from ivid_jax.training.checkpoint import load_params  # pylint: disable=g-import-not-at-top
    return load_params
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
