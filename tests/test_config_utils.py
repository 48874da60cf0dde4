"""The one config route: `load_config` specs and overrides, configs/red116.py, the cache root."""

import os

import ml_collections
import pytest

from support import tiny_run
from revgm_jax import config_utils
from revgm_jax.data import builder
from revgm_jax.zoo import build, presets

RED116 = os.path.join(tiny_run.REPO, "configs", "red116.py")


def _flat(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def test_load_config_spec_and_overrides():
  tiny = config_utils.load_config(tiny_run.TINY, {"data.test_set": 2, "eval.k_images": (1, 3)})
  assert tiny.model.fen_depth == 3 and tiny.data.zoo.preset == "tiny"  # the :tiny argument
  assert tiny.data.test_set == 2 and tiny.eval.k_images == (1, 3)
  assert tiny.is_locked  # as `--config` gives it to train.py: no new fields by mistake
  assert config_utils.load_config(tiny_run.DEFAULT).model.fen_depth == 8


@pytest.mark.parametrize("overrides,message", [
    ({"data.nonexistent": 1}, "no field 'data.nonexistent'"),
    ({"nothing.here": 1}, "no field 'nothing.here'"),
    ({"batch_size": "abc"}, "batch_size='abc'"),
])
def test_bad_override_names_the_field_and_file(overrides, message):
  with pytest.raises(ValueError, match=message) as e:
    config_utils.load_config(tiny_run.TINY, overrides)
  assert str(e.value).startswith(tiny_run.TINY)


def test_missing_config_file_is_named():
  with pytest.raises(FileNotFoundError, match="config file /no/such.py does not exist"):
    config_utils.load_config("/no/such.py:tiny")


def test_with_overrides_leaves_the_input_alone():
  base = config_utils.load_config(tiny_run.TINY)
  changed = config_utils.with_overrides(base, {"seed": 7, "loss.fen_terms": ""})
  assert (changed.seed, changed.loss.fen_terms) == (7, "")
  assert (base.seed, base.loss.fen_terms) == (1, "mag,spec,rep,sym")


def test_red116_is_default_with_the_paper_settings():
  """configs/red116.py loads default.py through the loader and changes what its docstring says."""
  red, default = _flat(config_utils.load_config(RED116)), _flat(config_utils.load_config(
      tiny_run.DEFAULT))
  assert red.keys() == default.keys()
  paper = {"data.source": "folder", "data.space": "red116", "data.num_val_gms": 8,
           "image_size": 64, "batch_size": 16, "model.fen_depth": 17, "model.fen_width": 64,
           "optim.lr": 1e-4, "optim.weight_decay": 1e-4, "num_epochs": 20,
           "num_train_steps": -1, "loss.low_freq_radius": 25, "eval_every_steps": 6500,
           "loss.continuous": "mse", "model.cont_bias_init": "torch"}
  assert {k: red[k] for k in paper} == paper
  changed = {k for k in red if red[k] != default[k]}
  assert changed <= paper.keys() | {"eval_batch_size", "log_every_steps",
                                    "checkpoint_every_steps"}
  with pytest.raises(ValueError, match="takes no argument"):
    config_utils.load_config(RED116 + ":tiny")


@pytest.mark.parametrize("value", [None, ""])
def test_unset_or_empty_cache_variable_means_the_home_cache(value, monkeypatch):
  if value is None:
    monkeypatch.delenv("REVGM_CACHE", raising=False)
  else:
    monkeypatch.setenv("REVGM_CACHE", value)
  home = os.path.expanduser(os.path.join("~", ".cache", "revgm_jax"))
  assert config_utils.cache_root() == home
  assert builder.default_data_dir() == os.path.join(home, "tfds")
  assert build.default_zoo_dir(presets.get_preset("tiny")).startswith(
      os.path.join(home, "zoo", "tiny-"))


def test_cache_variable_moves_every_cache(monkeypatch, tmp_path):
  monkeypatch.setenv("REVGM_CACHE", str(tmp_path))
  assert builder.default_data_dir() == str(tmp_path / "tfds")
  assert build.default_zoo_dir(presets.get_preset("tiny")).startswith(str(tmp_path / "zoo"))
