"""The `ivid-jax` command, end to end on the bundled images."""

import os
import subprocess
import sys

from PIL import Image


def test_warp_demo_writes_a_picture_and_an_animation(tmp_path):
  cmd = [sys.executable, '-m', 'ivid_jax.main', 'warp-demo',
         f'--config={os.path.join(os.path.dirname(__file__), "..", "configs", "warp_demo.py")}:runlocal',
         f'--workdir={tmp_path}']
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  grid = Image.open(tmp_path / 'warp_grid.png')
  # 3 images x (input, depth, 2 conditions) tiles of 128 px.
  assert grid.size == (4 * 128, 3 * 128)
  gif = Image.open(tmp_path / 'warp_swing.gif')
  assert gif.n_frames == 4 and gif.size == (3 * 128, 128)


def test_unknown_command_is_a_usage_error():
  result = subprocess.run([sys.executable, '-m', 'ivid_jax.main', 'fly'], capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode != 0 and 'warp-demo' in result.stderr


def test_each_command_help_lists_its_own_flags_only():
  from ivid_jax import main  # pylint: disable=g-import-not-at-top
  synopsis = subprocess.run([sys.executable, '-m', 'ivid_jax.main', '--help'],
                            capture_output=True, text=True, timeout=120, check=False)
  assert synopsis.returncode == 0
  assert all(name in synopsis.stdout for name in main.COMMANDS)
  result = subprocess.run([sys.executable, '-m', 'ivid_jax.main', 'convert-checkpoint', '--help'],
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0
  assert '--backbone' in result.stdout and 'SRC' in result.stdout
  assert '--images' not in result.stdout and '--workdir' not in result.stdout
