"""The authors' checkpoints -> Flax: the ImageNet-128 layouts, errors, orbax files, the CLI."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from ivid_jax.models import convert
from ivid_jax.models import model_file

DATA = os.path.join(os.path.dirname(__file__), 'data')


@pytest.mark.parametrize('name,count', [('uncond', 421_527_300), ('cond', 421_541_124)])
def test_imagenet128_layout_maps_one_to_one(name, count):
  config, shapes = convert.read_layout(os.path.join(DATA, f'imagenet128_{name}_state_dict_layout.txt'))
  assert len(shapes) == 494  # + the config line: the file's 495 lines
  model, mapping = convert.check_layout(shapes, config)
  assert len(mapping) == 493 and len(set(mapping.values())) == 493  # all but the freqs buffer
  theirs = sum(int(np.prod(s)) for k, s in shapes.items() if k != 'time_embed.0.freqs')
  ours = convert.param_count(convert.abstract_params(model))
  assert ours == theirs == count


def test_mismatches_are_named():
  config, shapes = convert.read_layout(os.path.join(DATA, 'imagenet128_uncond_state_dict_layout.txt'))
  bad = dict(shapes)
  bad['input_blocks.0.0.weight'] = (256, 10, 3, 3)
  del bad['out.2.bias']
  bad['input_blocks.99.0.foo.weight'] = (1,)
  with pytest.raises(ValueError) as e:
    convert.check_layout(bad, config, source='bad.pt')
  msg = str(e.value)
  assert 'bad.pt' in msg and 'input_blocks.0.0.weight' in msg and 'out_2/bias' in msg
  assert 'input_blocks.99.0.foo.weight' in msg


def test_orbax_round_trip_and_no_overwrite(tmp_path):
  ref = os.path.join(DATA, 'adm_small_ref.npz')
  args = json.loads(str(np.load(ref)['config_json']))
  model, params = convert.load_torch_state_dict(convert.read_state_dict(ref), args)
  path = convert.save_params(params, str(tmp_path / 'ckpt'))
  restored = convert.restore_params(path, model)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match='already exists'):
    convert.save_params(params, path)


def _convert(*args):
  return subprocess.run([sys.executable, '-m', 'ivid_jax.main', 'convert-checkpoint', *args],
                        capture_output=True, text=True, timeout=300, check=False)


def test_convert_checkpoint_command(tmp_path):
  ref = os.path.join(DATA, 'adm_small_ref.npz')
  config = tmp_path / 'backbone.json'
  config.write_text(str(np.load(ref)['config_json']))
  dst = tmp_path / 'converted.msgpack'
  result = _convert(ref, f'--out={dst}', f'--backbone={config}')
  assert result.returncode == 0, result.stderr[-2000:]
  loaded = model_file.load(dst, expect_kind='cond')  # the reference network has 10 inputs
  reference = convert.read_state_dict(ref)
  np.testing.assert_array_equal(loaded.params['out_2']['bias'], reference['out.2.bias'])
  assert loaded.model.model_channels == 32 and loaded.meta['source'] == os.path.abspath(ref)
  # An existing model file is refused (also given as the second argument), one line, exit 1 ...
  again = _convert(ref, str(dst), f'--backbone={config}')
  assert again.returncode == 1 and again.stderr.strip().splitlines() == [
      f'ivid-jax convert-checkpoint: error: {dst}: already exists; pass --overwrite to replace '
      'it, or choose another --out']
  # ... and replaced with --overwrite.
  os.utime(dst, (0, 0))
  again = _convert(ref, f'--out={dst}', f'--backbone={config}', '--overwrite')
  assert again.returncode == 0, again.stderr[-2000:]
  assert os.path.getmtime(dst) > 0
  missing = _convert(str(tmp_path / 'nope.pt'), f'--out={tmp_path / "x"}', f'--backbone={config}')
  assert missing.returncode == 1 and 'nope.pt' in missing.stderr
  assert 'Traceback' not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
  wrong_args = _convert(ref)
  assert wrong_args.returncode == 2 and 'expects SRC' in wrong_args.stderr
  assert '--backbone' in wrong_args.stderr  # the command's help comes with a usage error
