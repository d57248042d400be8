"""Tests for ivid_jax/atomic.py: a write either lands whole under its name or not at all."""

import os

import pytest

from ivid_jax import atomic


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / 'sub' / 'a.txt'
  atomic.write_text_atomic(path, 'first')
  atomic.write_atomic(path, lambda f: f.write(b'second'))
  assert path.read_text() == 'second'
  assert os.listdir(path.parent) == ['a.txt']
  assert os.stat(path).st_mode & 0o044  # readable by others, not mkstemp's 0600


def test_failed_write_keeps_the_previous_file(tmp_path):
  path = tmp_path / 'a.bin'
  path.write_bytes(b'old')

  def write(f):
    f.write(b'half')
    raise RuntimeError('killed')

  with pytest.raises(RuntimeError, match='killed'):
    atomic.write_atomic(path, write)
  assert path.read_bytes() == b'old'
  assert os.listdir(tmp_path) == ['a.bin']


def test_atomic_path_gives_a_hidden_name_with_the_suffix(tmp_path):
  path = tmp_path / 'v.mp4'
  with atomic.atomic_path(path, suffix='.mp4') as tmp:
    name = os.path.basename(tmp)
    assert name.startswith('.v.mp4.') and name.endswith('.partial.mp4')
    with open(tmp, 'wb') as f:  # a writer that takes a file name, as ffmpeg does
      f.write(b'frames')
  assert path.read_bytes() == b'frames'
  assert os.listdir(tmp_path) == ['v.mp4']
