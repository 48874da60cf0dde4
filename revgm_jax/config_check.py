"""Every config value that cannot work, refused in one line before anything slow runs.

`check_config` runs first in `train_lib.train_and_evaluate`, `eval.py` and `revgm prepare`:
a wrong value must not surface after the zoo and the TFRecords are built, or at the first step.
Its choices (tasks, losses, initialisations, dtypes) are defined here, where the modules that
act on them (`tasks`, `losses.parsing`, `models.model`) read them.
"""

from __future__ import annotations

import ml_collections

from revgm_jax.config_utils import ConfigError

TASKS = ("parsing", "detection", "attribution")  # config.task
CONTINUOUS = ("mse", "l1", "bce")  # config.loss.continuous
CONT_BIAS_INITS = ("mean", "torch")  # config.model.cont_bias_init
DTYPES = ("bfloat16", "float32")  # config.model.dtype
SOURCES = ("zoo", "folder")  # config.data.source
CLASS_WEIGHTS_FROM = ("all", "train")  # config.loss.class_weights_from


def task_name(config: ml_collections.ConfigDict) -> str:
  """config.task; runs saved before tasks existed have no field and are parsing runs."""
  task = config.get("task", "parsing")
  if task not in TASKS:
    raise ConfigError(f"config.task={task!r}; use one of {', '.join(TASKS)}")
  return task


def check_continuous(kind: str) -> None:
  if kind not in CONTINUOUS:
    raise ConfigError(f"config.loss.continuous={kind!r}; use one of {CONTINUOUS}")


def cont_bias_init(config: ml_collections.ConfigDict) -> str:
  """config.model.cont_bias_init; runs saved before the field existed used PyTorch's init."""
  kind = config.model.get("cont_bias_init", "torch")
  if kind not in CONT_BIAS_INITS:
    raise ConfigError(f"config.model.cont_bias_init={kind!r}; use one of {CONT_BIAS_INITS}")
  return kind


def check_dtype(dtype: str) -> None:
  if dtype not in DTYPES:
    raise ConfigError(f"config.model.dtype={dtype!r} is not supported; use one of "
                      f"{list(DTYPES)}")


def _check_data(config: ml_collections.ConfigDict, task: str) -> None:
  d = config.data
  if d.source not in SOURCES:
    raise ConfigError(f"config.data.source={d.source!r}; use 'zoo' or 'folder'")
  if d.source == "folder" and not d.image_dir:
    raise ConfigError("config.data.source='folder' needs --config.data.image_dir=IMAGE_DIR "
                      "(IMAGE_DIR/<GM_NAME>/*.png|jpg|jpeg|bmp)")
  if task == "parsing":
    if d.num_val_gms < 1:
      raise ConfigError(f"config.data.num_val_gms={d.num_val_gms}: model selection needs at "
                        "least one validation GM (held out from the training GMs)")
    if config.loss.class_weights_from not in CLASS_WEIGHTS_FROM:
      raise ConfigError(f"config.loss.class_weights_from={config.loss.class_weights_from!r}; "
                        "use 'train' or 'all'")
    return
  if d.shuffle_labels:
    raise ConfigError(f"config.data.shuffle_labels=True is a parsing baseline; config.task="
                      f"{task!r} does not support it")
  v, t = d.val_fraction, d.test_fraction
  if not (0 < v and 0 < t and v + t < 1):
    raise ConfigError(f"config.data.val_fraction={v} and test_fraction={t} must be > 0 and "
                      "leave a training share (sum < 1)")


def _check_batches(config: ml_collections.ConfigDict, num_devices: int,
                   process_count: int) -> None:
  """Global batches split evenly over the devices (every process then holds the same share:
  devices per process are equal in a JAX cluster); input shards are dealt evenly to the
  processes and split the global batch evenly."""
  for name in ("batch_size", "eval_batch_size"):
    if config[name] < 1 or config[name] % num_devices:
      raise ConfigError(f"config.{name}={config[name]} is not divisible by the {num_devices} "
                        "devices of the data mesh")
  shards = config.data.input_shards
  if shards and (shards % process_count or config.batch_size % shards):
    raise ConfigError(f"config.data.input_shards={shards} must be a multiple of the "
                      f"{process_count} processes and divide config.batch_size="
                      f"{config.batch_size} (0: one per process)")


def check_config(config: ml_collections.ConfigDict, num_devices: int = 1,
                 process_count: int = 1) -> None:
  """Raises ConfigError naming the first field whose value cannot work; num_devices and
  process_count: the data mesh's and the job's (the batch fields must divide over them)."""
  task = task_name(config)
  for name in ("log_every_steps", "eval_every_steps"):
    if config[name] < 1:
      raise ConfigError(f"config.{name}={config[name]} must be >= 1")
  check_continuous(config.loss.continuous)
  check_dtype(config.model.dtype)
  if task == "parsing":
    cont_bias_init(config)
  _check_data(config, task)
  _check_batches(config, num_devices, process_count)
