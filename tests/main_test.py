"""The `ivid-jax` command: its help, its exit codes, where logs go, and `parse_only`."""

import os
import subprocess
import sys

import pytest
from PIL import Image

ROOT = os.path.join(os.path.dirname(__file__), '..')


def _ivid(*args, env=None, timeout=600):
  return subprocess.run([sys.executable, '-m', 'ivid_jax.main', *args], capture_output=True,
                        text=True, timeout=timeout, check=False,
                        env=None if env is None else {**os.environ, **env})


def _python(code: str, timeout=120):
  return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        timeout=timeout, check=False, cwd=ROOT)


def test_warp_demo_writes_a_picture_and_an_animation_and_keeps_the_console_quiet(tmp_path):
  out = tmp_path / 'warps'
  # JAX probes every backend when JAX_PLATFORMS is unset (the tests set it to cpu).
  probing = {'JAX_PLATFORMS': ''}
  result = _ivid('warp-demo', f'--config={ROOT}/configs/warp_demo.py:runlocal', f'--out={out}',
                 env=probing)
  assert result.returncode == 0, result.stderr[-2000:]
  grid = Image.open(out / 'warp_grid.png')
  # 3 images x (input, depth, 2 conditions) tiles of 128 px.
  assert grid.size == (4 * 128, 3 * 128)
  gif = Image.open(out / 'warp_swing.gif')
  assert gif.n_frames == 4 and gif.size == (3 * 128, 128)
  # JAX's backend probing is a library's INFO: in the log file, not on the console; the
  # command's own one-line INFO is on both.
  log = (out / 'ivid-jax.log').read_text()
  assert 'Unable to initialize backend' not in result.stderr + result.stdout
  assert 'Unable to initialize backend' in log
  assert 'Warping 3 images' in result.stderr and 'Warping 3 images' in log
  # The same --out again is refused; the default config is the packaged one.
  again = _ivid('warp-demo', '--config.num_frames=0', f'--out={out}')
  assert again.returncode == 1 and 'pass --overwrite' in again.stderr
  verbose = _ivid('warp-demo', '--config.num_frames=0', '--config.num_cameras=1',
                  f'--out={tmp_path / "v"}', '--verbosity=1', env=probing)
  assert verbose.returncode == 0, verbose.stderr[-2000:]
  assert 'Unable to initialize backend' in verbose.stderr


def test_unknown_command_is_a_usage_error():
  result = _ivid('fly', timeout=120)
  assert result.returncode == 2 and 'warp-demo' in result.stderr


def test_each_command_help_lists_its_own_flags_only():
  from ivid_jax import main  # pylint: disable=g-import-not-at-top
  synopsis = _ivid('--help', timeout=120)
  assert synopsis.returncode == 0
  assert all(name in synopsis.stdout for name in main.COMMANDS)
  result = _ivid('convert-checkpoint', '--help', timeout=120)
  assert result.returncode == 0
  assert '--backbone' in result.stdout and 'SRC' in result.stdout and '--out' in result.stdout
  assert '--images' not in result.stdout and '--workdir' not in result.stdout


def test_sample_and_demo_help_show_the_shared_sampler_flags_and_both_presets():
  for command in ('sample', 'demo'):
    result = _ivid(command, '--help', timeout=120)
    assert result.returncode == 0
    assert '--steps_cond' in result.stdout and '--overwrite' in result.stdout
    assert 'authors: seeds=0-7, classes=mod, steps_uncond=1000' in ' '.join(result.stdout.split())
    assert 'demo: seeds=0-2, classes=spheres,tabletop,room, steps_uncond=50' in ' '.join(
        result.stdout.split())


def test_help_never_imports_jax():
  from ivid_jax import main  # pylint: disable=g-import-not-at-top
  for command in [None] + list(main.COMMANDS):
    argv = ['ivid-jax'] + ([command] if command else []) + ['--help']
    result = _python(
        'import sys\nfrom ivid_jax import main\ntry:\n'
        f'  main.run({argv!r})\nexcept SystemExit as e:\n  assert e.code == 0, e.code\n'
        "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'flax'))))")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == '[]', (command, result.stdout[-500:])


def test_a_usage_error_exits_2_with_the_commands_help():
  result = _ivid('render', '--scene_dir=x', timeout=120)  # the flag is --scenes
  assert result.returncode == 2
  assert 'ivid-jax render: error: Unknown command line flag \'scene_dir\'' in result.stderr
  assert '--scenes' in result.stderr and 'Traceback' not in result.stderr
  result = _ivid('sample', '--steps_cond=0', timeout=120)
  assert result.returncode == 2 and 'steps_cond' in result.stderr.splitlines()[-1]
  result = _ivid('sample', '--seeds=3-1', '--uncond=u', '--cond=c', timeout=120)
  assert result.returncode == 2 and "'3-1': expected integers" in result.stderr.splitlines()[-1]


def test_a_runtime_error_is_one_line_and_exit_1_unless_traceback_is_asked_for(tmp_path):
  args = ('sample', f'--uncond={tmp_path}/nope.msgpack', '--viewset=uncond',
          f'--out={tmp_path / "out"}')
  result = _ivid(*args, timeout=300)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f'ivid-jax sample: error: {tmp_path}/nope.msgpack: no such model file']
  for extra, env in ((['--traceback'], None), ([], {'IVID_JAX_TRACEBACK': '1'})):
    result = _ivid(*args, *extra, env=env, timeout=300)
    assert result.returncode == 1
    assert 'Traceback (most recent call last)' in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith('FileNotFoundError: ')


def test_train_failures_are_runtime_errors(tmp_path):
  # A start point that does not exist fails at run time: one line, exit 1.
  result = _ivid('train', f'--config={ROOT}/configs/tiny_uncond.py',
                 f'--config.init_from={tmp_path}/no_such.msgpack', f'--workdir={tmp_path / "run"}')
  assert result.returncode == 1, result.stderr[-2000:]
  # The console keeps the run's own INFO lines before it; the error is the last line.
  assert result.stderr.strip().splitlines()[-1].startswith('ivid-jax train: error: ')
  assert 'no_such.msgpack' in result.stderr and 'Traceback' not in result.stderr


def test_parse_only_validates_flags_and_config_files_without_running():
  result = _python('\n'.join([
      'import sys',
      'from absl import flags',
      'from ivid_jax import main',
      "print(main.parse_only('ivid-jax train --config=configs/tiny_uncond.py "
      "--config.total_steps=20 --workdir=/tmp/never_made'))",
      "print(flags.FLAGS.config.total_steps, flags.FLAGS.config.kind)",
      "for line in ('ivid-jax train --config=configs/tiny_uncond.py --config.no_such=1',",
      "             'ivid-jax train --config=configs/no_such.py',",
      "             ['train', '--workdirr=x']):",
      '  try:',
      '    main.parse_only(line)',
      "    print('parsed', line)",
      '  except flags.Error as e:',
      "    print('error', type(e).__name__)",
      "print('jax' in sys.modules)"]))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.splitlines() == [
      "('train', [])", '20 uncond', 'error IllegalFlagValueError', 'error IllegalFlagValueError',
      'error UnrecognizedFlagError', 'False']
  assert not os.path.exists('/tmp/never_made')


def test_parse_only_knows_the_renamed_flags():
  result = _python('\n'.join([
      'from absl import flags',
      'from ivid_jax import main',
      "print(main.parse_only('ivid-jax render --scenes=outputs/sample --out=outputs/render'))",
      "print(flags.FLAGS.scenes, flags.FLAGS.out, flags.FLAGS.overwrite)",
      "print(main.parse_only('ivid-jax render --scenes=outputs/sample --overwrite'))",
      "print(flags.FLAGS.out, flags.FLAGS.overwrite)",
      'try:',
      "  main.parse_only('ivid-jax render --scene_dir=outputs/sample')",
      'except flags.UnrecognizedFlagError as e:',
      "  print('renamed:', e.flagname)",
      'try:',
      "  main.parse_only('ivid-jax fly')",
      'except ValueError as e:',
      "  print('unknown command')",
      'try:',
      "  main.parse_only('ivid-jax render extra --scenes=x')",
      'except ValueError as e:',
      "  print(e)"]))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.splitlines() == [
      "('render', [])", 'outputs/sample outputs/render False', "('render', [])",
      'outputs/render True', 'renamed: scene_dir', 'unknown command',
      "ivid-jax render takes 0..0 positional argument(s), got ['extra']"]


def test_the_overwrite_rule(tmp_path):
  from ivid_jax.commands import outputs  # pylint: disable=g-import-not-at-top
  folder = tmp_path / 'out'
  assert outputs.check_out(str(folder), overwrite=False) == str(folder)  # absent: fine
  folder.mkdir()
  (folder / 'ivid-jax.log').write_text('a log of an earlier, failed run')
  assert outputs.check_out(str(folder), overwrite=False) == str(folder)  # only a log: fine
  (folder / 'scenes').mkdir()
  with pytest.raises(outputs.OutputExistsError, match='holds files; pass --overwrite'):
    outputs.check_out(str(folder), overwrite=False)
  assert outputs.check_out(str(folder), overwrite=True) == str(folder)
  model = tmp_path / 'net.msgpack'
  assert outputs.check_out(str(model), is_file=True, overwrite=False) == str(model)
  model.write_bytes(b'x')
  with pytest.raises(outputs.OutputExistsError, match='already exists; pass --overwrite'):
    outputs.check_out(str(model), is_file=True, overwrite=False)
  with pytest.raises(outputs.OutputExistsError, match='is a file, but --out must be a folder'):
    outputs.check_out(str(model), overwrite=False)


def test_export_refuses_an_existing_model_file(tmp_path):
  # The rule is checked before the workdir is read, so no training run is needed here.
  model = tmp_path / 'net.msgpack'
  model.write_bytes(b'an earlier export')
  result = _ivid('export', f'--workdir={tmp_path / "run"}', f'--out={model}', timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f'ivid-jax export: error: {model}: already exists; pass --overwrite to replace it, or '
      'choose another --out']
  assert model.read_bytes() == b'an earlier export'
  result = _ivid('export', f'--workdir={tmp_path / "run"}', f'--out={model}', '--overwrite',
                 timeout=300)
  assert result.returncode == 1 and 'already exists' not in result.stderr  # no workdir there
  assert str(tmp_path / 'run') in result.stderr.strip().splitlines()[-1]
