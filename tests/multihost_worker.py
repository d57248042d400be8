"""One process of parallel_test's two-process run: joins the run, trains 3 steps, saves its params.

  python tests/multihost_worker.py PORT PROCESS_ID WORKDIR OUT.npz
"""

import sys

import numpy as np


def main(port: str, process_id: str, workdir: str, out: str) -> None:
  from ivid_jax.training import parallel  # pylint: disable=g-import-not-at-top
  parallel.initialize_distributed(f'localhost:{port}', 2, int(process_id))
  import jax  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  from ivid_jax.configs import tiny_uncond  # pylint: disable=g-import-not-at-top
  from ivid_jax.training import train  # pylint: disable=g-import-not-at-top
  assert jax.process_count() == 2 and jax.device_count() == 2 * jax.local_device_count()
  config = tiny_uncond.get_config('micro')  # parallel_test compares with the same config
  config.writer = 'basic'
  config.total_steps = config.log_every_steps = config.checkpoint_every_steps = 3
  config.preview_every_steps = 0
  state = train.train_and_evaluate(config, workdir)
  # Replicated arrays: every process holds the whole value.
  flat = traverse_util.flatten_dict(jax.device_get(state.params), sep='/')
  np.savez(out, step=int(state.step), devices=jax.device_count(), **flat)


if __name__ == '__main__':
  main(*sys.argv[1:])
