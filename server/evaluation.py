"""Metrics of a model's outputs against labels, on numpy arrays: one set of definitions for the
pipeline's ``evaluate`` step and the rollout's validation gate (each checked against
scikit-learn or scipy in the tests).

Each takes ``(labels, scores, threshold)``. ``scores`` is one value per row (``[n]`` or
``[n, 1]``), two columns of class probabilities (the positive class's is the second), or ``k``
columns of class probabilities (the predicted class is the argmax). ``threshold`` turns one
score per row into a class for ``accuracy``. A shape a metric cannot use is ``InvalidInput``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from server.errors import InvalidInput

Array = npt.NDArray[np.float64]
Metric = Callable[..., float]
_EPS = 1e-15


def accuracy(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows whose predicted class (argmax of the columns, or score >= ``threshold``
    for one score per row) is the label."""
    if scores.ndim == 2 and scores.shape[1] > 1:
        predicted = np.argmax(scores, axis=1)
    else:
        predicted = (_one_per_row(scores) >= threshold).astype(np.int64)
    return float(np.mean(predicted == labels.astype(np.int64)))


def auc(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) formula, ties given their average rank."""
    from scipy.stats import rankdata

    y = labels.astype(np.float64)
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise InvalidInput("auc needs binary labels 0 and 1")
    positives = int(np.sum(y == 1.0))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise InvalidInput("auc needs both classes among the labels")
    ranks = rankdata(_positive(scores))
    u = float(np.sum(ranks[y == 1.0])) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def log_loss(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """Cross-entropy: over the columns for ``k > 2`` class probabilities, else binary."""
    y = labels.astype(np.int64)
    if scores.ndim == 2 and scores.shape[1] > 2:
        p = np.clip(scores[np.arange(len(y)), y].astype(np.float64), _EPS, 1.0)
        return float(-np.mean(np.log(p)))
    p = np.clip(_positive(scores), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def rmse(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.sqrt(np.mean((_one_per_row(scores) - labels.astype(np.float64)) ** 2)))


def mae(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean(np.abs(_one_per_row(scores) - labels.astype(np.float64))))


def r2(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    y = labels.astype(np.float64)
    residual = np.sum((y - _one_per_row(scores)) ** 2)
    total = np.sum((y - y.mean()) ** 2)
    return float(1.0 - residual / total)


METRICS: dict[str, Metric] = {
    "accuracy": accuracy,
    "auc": auc,
    "log_loss": log_loss,
    "logloss": log_loss,  # the spelling `sluice models validate --metric` has used
    "rmse": rmse,
    "mae": mae,
    "r2": r2,
}
# Whether a larger value is better: decides what "worse than the deployed version" means.
HIGHER_IS_BETTER = {
    "accuracy": True,
    "auc": True,
    "log_loss": False,
    "logloss": False,
    "rmse": False,
    "mae": False,
    "r2": True,
}


def _one_per_row(scores: np.ndarray) -> Array:
    if scores.ndim == 1:
        return np.asarray(scores, np.float64)
    if scores.ndim == 2 and scores.shape[1] == 1:
        return np.asarray(scores[:, 0], np.float64)
    raise InvalidInput(f"this metric needs one score per row, got shape {list(scores.shape)}")


def _positive(scores: np.ndarray) -> Array:
    """The positive class's score: one score per row as is, or the second of two columns."""
    if scores.ndim == 2 and scores.shape[1] == 2:
        return np.asarray(scores[:, 1], np.float64)
    try:
        return _one_per_row(scores)
    except InvalidInput:
        raise InvalidInput(
            f"a binary metric needs one score per row or two columns, got {list(scores.shape)}"
        ) from None
