"""The Colab notebooks run top to bottom against the installed package."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

COLAB = os.path.join(os.path.dirname(__file__), '..', 'colab')


# Per notebook: the outputs a full run shows (PNG images, and mediapy's inline <video>s).
EXPECTED = {
    'warp_demo.ipynb': {'png': 2, 'video': 0},
    # Quick offline mode (IVID_DEMO_QUICK): one scene's two grids, the metrics plot, the
    # photo's grid; the scene's and the photo's videos.
    'quickstart.ipynb': {'png': 4, 'video': 2},
}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_notebook_executes(name, tmp_path, monkeypatch):
  nb = nbformat.read(os.path.join(COLAB, name), as_version=4)
  # One simulated device is enough here: of the suite's XLA_FLAGS the kernel gets only the
  # optimisation level (tests/conftest.py's, or the user's own).
  level = [f for f in os.environ.get('XLA_FLAGS', '').split()
           if f.startswith('--xla_backend_optimization_level')]
  monkeypatch.setenv('XLA_FLAGS', ' '.join(level))
  # The quickstart in its offline mode (the shipped models), quick settings.
  monkeypatch.setenv('IVID_DEMO_QUICK', '1')
  monkeypatch.delenv('IVID_DEMO_MODELS', raising=False)
  NotebookClient(nb, timeout=600, kernel_name='python3',
                 resources={'metadata': {'path': str(tmp_path)}}).execute()
  outputs = [o for cell in nb.cells if cell.cell_type == 'code' for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  videos = [o for o in outputs if '<video' in o.get('data', {}).get('text/html', '')]
  assert {'png': len(images), 'video': sum(o['data']['text/html'].count('<video')
                                           for o in videos)} == EXPECTED[name]


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_notebook_installs_from_the_project_repository(name):
  import ivid_jax  # pylint: disable=g-import-not-at-top
  nb = nbformat.read(os.path.join(COLAB, name), as_version=4)
  setup = ''.join(nb.cells[1].source)
  assert f"repo_url = '{ivid_jax.REPOSITORY_URL}'" in setup
