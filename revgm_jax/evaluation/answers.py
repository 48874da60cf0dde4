"""What `revgm parse` answers, measured: the spectral parser beside the deep one, and the
per-head decisions fitted on the validation GMs (docs/protocol.md#the-parsers-answer).

The evaluation of a parsing run reads three splits; each pass keeps the fixed image features
(`revgm_jax.features.spectral`) of the images it reads:
  1. training GMs (the retrieval bank's images): "spectral features + linear heads" is fitted
     on them (`fit_spectral`), and their mean features are the feature-retrieval bank;
  2. validation GMs: the deep and the spectral parser's predictions choose each head's source
     and fit its decisions (`fit_decisions`, `decisions.py`);
  3. the evaluated split: both parsers, feature retrieval and the decided answer ("parser")
     are scored beside the baselines.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import numpy as np

from revgm_jax import labels
from revgm_jax.evaluation import baselines, decisions
from revgm_jax.features import fitting, linear, spectral


def with_images(predict_fn: Callable) -> Callable:
  """`predict_fn` whose per-example outputs also carry the batch's images."""

  def fn(variables, batch):
    out, sums = predict_fn(variables, batch)
    return {**out, "image": batch["image"]}, sums

  return fn


def features_of(per: dict, mean: float, std: float) -> dict:
  """An `evaluator.collect` reduction: the images of `per` replaced by their features."""
  per = dict(per)
  per["features"] = spectral.image_features(spectral.unit_images(per.pop("image"), mean, std))
  return per


@dataclasses.dataclass(frozen=True)
class Spectral:
  """The spectral parser of a run and its feature-retrieval bank."""
  parser: linear.SpectralParser
  bank_rows: np.ndarray  # [T] GT rows of the training GMs
  bank: np.ndarray  # [T, D] their mean features

  def predictions(self, gt: labels.GroundTruth, features: np.ndarray) -> tuple[dict, dict]:
    """(spectral parser, feature retrieval) predictions of per-image features [N, D]."""
    return (self.parser.predict(features),
            baselines.feature_retrieval_predictions(gt, self.bank_rows, self.bank, features))


def fit_spectral(features: np.ndarray, gm_rows: np.ndarray, gt: labels.GroundTruth,
                 train_rows, seed: int) -> Spectral:
  """Fits the spectral parser on the training GMs' image features [N, D] (GT rows [N])."""
  parser = fitting.fit(features, gm_rows, gt, train_rows, seed=seed)
  bank_rows, bank = spectral.gm_mean_features(features, gm_rows)
  return Spectral(parser, bank_rows, bank)


def fit_decisions(per: Mapping, gt: labels.GroundTruth, train_rows,
                  spectral_fit: Spectral | None) -> tuple[dict, dict]:
  """(decisions, candidates) on the validation GMs' per-example outputs `per` ("pred", the
  label keys, "gm_row", and "features" when there is a spectral parser)."""
  spec = None if spectral_fit is None else spectral_fit.parser.predict(per["features"])
  cands = decisions.candidates(per["pred"], spec)
  target = {k: per[k] for k in labels.LABEL_KEYS}
  rows = np.asarray(train_rows)
  base = decisions.baseline(gt.net[rows], gt.space.discrete_classes, gt.loss[rows],
                            gt.loss_group[rows])
  groups = decisions.cohort_groups(per["gm_row"], gt.cohort)
  return decisions.fit(cands, target, groups, base, gt.space.group_of_loss), cands
