"""Test set-up: 8 simulated CPU devices and the reference data of the authors' code."""

import os

# Must happen before JAX initialises its backends.
# Appended, so that flags a user exports (the README's CPU flag, say) are kept.
_DEVICES = '--xla_force_host_platform_device_count=8'
if _DEVICES not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_DEVICES}".strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import tempfile  # pylint: disable=g-import-not-at-top

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

DATA = os.path.join(os.path.dirname(__file__), 'data')


@pytest.fixture(scope='session')
def fbwarp_ref():
  """The authors' forward-backward warps of six cases (tests/data/README.md)."""
  return dict(np.load(os.path.join(DATA, 'fbwarp_public_ref.npz')))


@pytest.fixture(scope='session')
def aggregate_ref():
  """The authors' 9-view chain and aggregated conditions (tests/data/README.md)."""
  return dict(np.load(os.path.join(DATA, 'aggregate_public_ref.npz')))


@pytest.fixture(autouse=True)
def _temp_files_in_tmp_path(tmp_path, monkeypatch):
  """TFDS's DatasetInfo.initialize_from_bucket leaves an empty mkdtemp() per builder: keep them in tmp_path."""
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
