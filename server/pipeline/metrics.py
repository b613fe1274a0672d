"""The metrics the ``evaluate`` kind computes, on float64 numpy arrays.

Each takes (labels, scores, decision threshold). ``scores`` is one value per row, or a row of
class probabilities (the class is the argmax; AUC scores column 1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from server.pipeline.kinds.base import StepFailed

Array = npt.NDArray[np.float64]


def accuracy(labels: Array, scores: Array, threshold: float) -> float:
    return float(np.mean(_classes(scores, threshold) == labels))


def auc(labels: Array, scores: Array, threshold: float) -> float:
    """Area under the ROC curve: the Mann-Whitney U of the positive class's scores, ties halved."""
    positive = scores[:, 1] if scores.ndim == 2 and scores.shape[1] > 1 else scores.reshape(-1)
    classes = np.unique(labels)
    if not np.all(np.isin(classes, (0.0, 1.0))) or len(classes) != 2:
        raise StepFailed("auc needs binary labels 0 and 1 with both present")
    order = np.argsort(positive, kind="mergesort")
    ranks = np.empty(len(positive))
    _, first, counts = np.unique(positive[order], return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0  # average 1-based rank of each group of ties
    ranks[order] = np.repeat(mid, counts)
    is_pos = labels == 1.0
    n_pos, n_neg = int(is_pos.sum()), int((~is_pos).sum())
    u = ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def log_loss(labels: Array, scores: Array, threshold: float) -> float:
    probs = scores if scores.ndim == 2 and scores.shape[1] > 1 else None
    eps = 1e-15
    if probs is None:
        p1 = np.clip(scores.reshape(-1), eps, 1 - eps)
        return float(-np.mean(labels * np.log(p1) + (1 - labels) * np.log(1 - p1)))
    picked = probs[np.arange(len(labels)), labels.astype(np.int64)]
    return float(-np.mean(np.log(np.clip(picked, eps, 1.0))))


def rmse(labels: Array, scores: Array, threshold: float) -> float:
    return float(np.sqrt(np.mean((scores.reshape(-1) - labels) ** 2)))


def mae(labels: Array, scores: Array, threshold: float) -> float:
    return float(np.mean(np.abs(scores.reshape(-1) - labels)))


def r2(labels: Array, scores: Array, threshold: float) -> float:
    residual = np.sum((labels - scores.reshape(-1)) ** 2)
    total = np.sum((labels - labels.mean()) ** 2)
    return float(1.0 - residual / total)


METRICS: dict[str, Callable[[Array, Array, float], float]] = {
    "accuracy": accuracy,
    "auc": auc,
    "log_loss": log_loss,
    "rmse": rmse,
    "mae": mae,
    "r2": r2,
}


def _classes(scores: Array, threshold: float) -> Array:
    if scores.ndim == 2 and scores.shape[1] > 1:
        classes: Array = np.argmax(scores, axis=1).astype(np.float64)
        return classes
    return (scores.reshape(-1) >= threshold).astype(np.float64)
