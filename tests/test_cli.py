"""The command lines' argument layer (absl flags): `revgm`, `revgm parse` and
`python -m revgm_jax.zoo build`; what they run is tested in test_parse.py and test_zoo.py."""

import subprocess
import sys

import pytest

from support import tiny_run
from revgm_jax.cli import main as cli
from revgm_jax.zoo import __main__ as zoo_cli
from revgm_jax.zoo import build, presets


@pytest.mark.parametrize("argv,status,stream", [([], 2, "err"), (["--help"], 0, "out"),
                                                (["segment"], 2, "err")])
def test_revgm_without_a_known_command_prints_the_usage(argv, status, stream, capsys):
  assert cli.main(argv) == status
  text = getattr(capsys.readouterr(), stream)
  assert "usage: revgm COMMAND" in text
  assert all(f"\n  {c} " in text for c in ("parse", "detect", "attribute"))
  assert ("unknown command 'segment'" in text) == (argv == ["segment"])


@pytest.mark.parametrize("argv,message", [
    (["x.png"], "flag --checkpoint=None: Flag --checkpoint must have a value"),
    (["--checkpoint", "w"], "no image file or folder given"),
    (["x.png", "--checkpoint", "w", "--bogus"], "Unknown command line flag 'bogus'"),
    (["--aggregate=mean", "--checkpoint=w", "x.png"], "flag --aggregate=mean: value should be"),
    (["x.png", "--batch_size=0", "--checkpoint=w"], "flag --batch_size=0: 0 is not a positive"),
])
def test_revgm_parse_bad_arguments_exit_2_naming_the_flag(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["parse", *argv])
  assert e.value.code == 2
  assert capsys.readouterr().err.startswith(f"FATAL Flags parsing error: {message}")


def test_revgm_parse_help_lists_the_flags(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["parse", "x.png", "--help"])
  out = capsys.readouterr().out
  assert e.value.code == 0 and out.startswith("usage: revgm parse --checkpoint PATH")
  for flag in ("--checkpoint", "--[no]json", "--aggregate", "--batch_size"):
    assert flag in out


@pytest.fixture
def zoo_builds(monkeypatch):
  """The configs `python -m revgm_jax.zoo build` would build, instead of building them."""
  calls = []
  monkeypatch.setattr(build, "build_zoo", lambda *args: calls.append(args))
  return calls


def test_zoo_overrides_reach_the_build_config(zoo_builds, tmp_path, capsys):
  zoo_cli.main(["--zoo.images_per_gm=3", "build", "--preset", "tiny", "--out", str(tmp_path),
                "--zoo.widths=8", "--zoo.widths=32", "--zoo.lr=1e-3", "--process_index=1",
                "--process_count=2"])
  [(cfg, out, index, count)] = zoo_builds
  want = presets.get_preset("tiny")
  want.update(images_per_gm=3, widths=(8, 32), lr=1e-3)
  assert cfg.to_dict() == want.to_dict()
  assert (out, index, count) == (str(tmp_path), 1, 2)
  assert capsys.readouterr().out == f"{tmp_path}\n"


def test_zoo_default_out_is_the_cache_dir_of_the_config(zoo_builds, monkeypatch, tmp_path):
  monkeypatch.setenv("REVGM_CACHE", str(tmp_path))
  zoo_cli.main(["build", "--zoo.images_per_gm=5"])
  [(cfg, out, index, count)] = zoo_builds
  assert cfg.preset == "default" and cfg.images_per_gm == 5 and index is count is None
  assert out == build.default_zoo_dir(cfg) and out.startswith(str(tmp_path / "zoo" / "default-"))


def test_zoo_fields_are_the_same_in_every_preset():
  """--zoo.* flags are typed from the default preset and set on the chosen one."""
  fields = {k: type(v) for k, v in presets.get_preset("default").items()}
  for name in presets.PRESETS:
    assert {k: type(v) for k, v in presets.get_preset(name).items()} == fields


@pytest.mark.parametrize("argv,message", [
    (["build", "--zoo.foo=1"], "--zoo.foo=1: the config has no field 'foo'"),
    (["build", "--zoo.images_per_gm=abc"], "flag --zoo.images_per_gm=abc: invalid literal"),
    (["build", "--zoo.preset=tiny"], "--zoo.preset: choose the preset with --preset"),
    (["build", "--preset=huge"], "flag --preset=huge: value should be one of"),
    (["build", "--zoo.image_size=40"], "zoo config: image_size=40 must be a multiple of 16"),
    (["make"], "expected the command build, got make"),
    ([], "expected the command build, got none"),
])
def test_zoo_bad_flags_are_one_line_exit_1(argv, message, zoo_builds, capsys):
  with pytest.raises(SystemExit) as e:
    zoo_cli.main(argv)
  assert e.value.code == 1 and not zoo_builds
  assert capsys.readouterr().err.startswith(f"FATAL Flags parsing error: {message}")


@pytest.mark.e2e
def test_zoo_command_line_error_has_no_traceback():
  proc = subprocess.run([sys.executable, "-m", "revgm_jax.zoo", "build", "--zoo.foo=1"],
                        capture_output=True, text=True, cwd=tiny_run.REPO, timeout=120)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.splitlines()[0] == ("FATAL Flags parsing error: --zoo.foo=1: the config has "
                                         "no field 'foo'; check the spelling and nesting of the "
                                         "field")


def test_zoo_out_holding_another_zoo_is_one_line(tmp_path, capsys):
  (tmp_path / build.CONFIG_FILE).write_text('{"preset": "other"}')
  with pytest.raises(SystemExit) as e:
    zoo_cli.main(["build", "--preset=tiny", f"--out={tmp_path}"])
  assert str(e.value.code).startswith(f"zoo build: {tmp_path} holds a zoo built with another "
                                      "config")
