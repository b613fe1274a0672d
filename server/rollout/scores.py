"""Evaluation metrics of a model's outputs against labels, for the validation gate.

Written here, small and dependency-free, because the pipeline's ``evaluate`` step was being
built at the same time; the two should become one module. Each is checked against
scikit-learn in the tests.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from server.errors import InvalidInput

Score = Callable[[np.ndarray, np.ndarray], float]
_EPS = 1e-15


def _positive(scores: np.ndarray) -> np.ndarray:
    """One score per row: a column vector as is, two columns' second, else refused."""
    if scores.ndim == 2 and scores.shape[1] == 2:
        return np.asarray(scores[:, 1], np.float64)
    if scores.ndim == 2 and scores.shape[1] == 1:
        return np.asarray(scores[:, 0], np.float64)
    if scores.ndim == 1:
        return np.asarray(scores, np.float64)
    raise InvalidInput(f"a binary metric needs one score per row, got shape {list(scores.shape)}")


def accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Share of rows whose predicted class (argmax, or score >= 0.5 for one column) is the label."""
    if scores.ndim == 2 and scores.shape[1] > 1:
        predicted = np.argmax(scores, axis=1)
    else:
        predicted = (_positive(scores) >= 0.5).astype(np.int64)
    return float(np.mean(predicted == labels.astype(np.int64)))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) formula, ties given their average rank."""
    from scipy.stats import rankdata

    y = labels.astype(np.int64)
    positives = int(np.sum(y == 1))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise InvalidInput("auc needs both classes among the labels")
    ranks = rankdata(_positive(scores))
    u = float(np.sum(ranks[y == 1])) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def rmse(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(np.sqrt(np.mean((_positive(scores) - labels.astype(np.float64)) ** 2)))


def mae(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean(np.abs(_positive(scores) - labels.astype(np.float64))))


def logloss(labels: np.ndarray, scores: np.ndarray) -> float:
    """Cross-entropy: binary for one score per row, else over the columns (probabilities)."""
    y = labels.astype(np.int64)
    if scores.ndim == 2 and scores.shape[1] > 2:
        p = np.clip(scores[np.arange(len(y)), y].astype(np.float64), _EPS, 1.0)
        return float(-np.mean(np.log(p)))
    p = np.clip(_positive(scores), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


SCORES: dict[str, Score] = {
    "accuracy": accuracy,
    "auc": auc,
    "rmse": rmse,
    "mae": mae,
    "logloss": logloss,
}
# Whether a larger value is better: decides what "worse than the alias's version" means.
HIGHER_IS_BETTER = {"accuracy": True, "auc": True, "rmse": False, "mae": False, "logloss": False}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_THRESHOLD = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True, slots=True)
class Threshold:
    """``auc>=0.8``: a metric and the bound it must meet."""

    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _THRESHOLD.match(text)
        if match is None:
            raise InvalidInput(f"metric threshold '{text}' is not NAME>=VALUE (or <=, >, <)")
        metric, op, bound = match.groups()
        if metric not in SCORES:
            raise InvalidInput(f"unknown metric '{metric}' (known: {', '.join(SCORES)})")
        try:
            value = float(bound)
        except ValueError as exc:
            raise InvalidInput(f"metric threshold '{text}': '{bound}' is not a number") from exc
        return cls(metric, op, value)

    def met(self, value: float) -> bool:
        return _OPS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"
