"""What one run learns: parsing, detection or attribution, selected by `config.task`.

Every task goes through the same loop (`train_lib`), jitted programs (`steps`), data pipeline,
checkpoints and evaluator; a task object supplies only the in-step objective (docs/tasks.md):
  loss(fingerprint, outputs, batch, axis_name) -> (loss, terms)   per device, inside shard_map
  predictions(outputs) -> per-example outputs                     what "pred" holds
  summary_keys                                                    the console line per validation
  name, config, class_weights
Its metrics, evaluation and results table are `revgm_jax.evaluation`'s (one dispatch on the
task, `evaluation.run`). The model comes from `create_model`: the parser for parsing, FEN +
classifier otherwise.
"""

from __future__ import annotations

import ml_collections

from revgm_jax import config_check, labels
from revgm_jax.data import splits
from revgm_jax.models import classifier, fen as fen_lib, model as model_lib
from revgm_jax.tasks import classify, parsing

TASKS = config_check.TASKS
name = config_check.task_name


def get(config: ml_collections.ConfigDict, space: labels.Space, class_weights=None):
  """The task of `config`; `class_weights` (the run's) are needed for its loss only."""
  if name(config) == "parsing":
    return parsing.ParsingTask(config, space, class_weights)
  return classify.ClassifyTask(config, class_weights)


def create_model(config: ml_collections.ConfigDict, space: labels.Space, split: dict,
                 axis_name: str | None = None, gt: labels.GroundTruth | None = None):
  """The model of `config`'s task; `split` (the run's) fixes the number of classes; `gt` (the
  run's labels, given where the model is trained) sets the parser's initial continuous bias
  (`models.model.cont_bias`)."""
  task = name(config)
  if task == "parsing":
    bias = None if gt is None else model_lib.cont_bias(config, gt, split["train"])
    return model_lib.create_model(config, space, axis_name=axis_name, cont_bias_init=bias)
  m = config.model
  dtype = model_lib.dtype_of(config)
  fen = fen_lib.FEN(depth=m.fen_depth, width=m.fen_width, bn_momentum=m.bn_momentum,
                    bn_epsilon=m.bn_epsilon, axis_name=axis_name, dtype=dtype)
  head = classifier.Classifier(
      num_classes=splits.num_classes(task, split), widths=tuple(m.classifier_widths),
      kernels=tuple(m.classifier_kernels), fc_width=m.fc_width, dropout=m.dropout, dtype=dtype)
  return classifier.FingerprintClassifier(fen=fen, classifier=head, input=m.classifier_input)
