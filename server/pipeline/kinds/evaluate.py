"""``kind = "evaluate"``: metrics of a scored dataset (``inputs.scored``) against its label
column, written to ``outputs.metrics`` (JSON); the run fails when a threshold is crossed.

    label = "label"                 # the label column (kept through scoring with keep = [...])
    prediction = "output"           # the model's output column (default "output")
    metrics = ["accuracy", "auc"]   # accuracy, auc, log_loss (classes); rmse, mae, r2 (values)
    min = { accuracy = 0.8 }        # fail below
    max = { log_loss = 0.7 }        # fail above

A prediction row of several values is a class-probability vector: the class is its argmax, and
AUC scores column 1 (binary labels). A single value is a regression output, or for ``accuracy``
and ``auc`` the probability of class 1 (class = value >= ``decision_threshold``, default 0.5).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from server.errors import SluiceError
from server.pipeline.kinds.base import StepContext, StepFailed, StepKind, string_list, typed
from server.pipeline.spec import PipelineError, Step

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


def _check(step: Step) -> None:
    names = string_list(step, "metrics") or ()
    for name in names:
        if name not in METRICS:
            raise PipelineError(
                f"{step.where('metrics')}: unknown metric '{name}' (known: {', '.join(METRICS)})"
            )
    for bound in ("min", "max"):
        table = step.params.get(bound, {})
        if not isinstance(table, dict):
            raise PipelineError(f"{step.where(bound)}: must be a table METRIC = number")
        for name, value in table.items():
            if name not in METRICS:
                raise PipelineError(f"{step.where(bound + '.' + name)}: unknown metric")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PipelineError(f"{step.where(bound + '.' + name)}: must be a number")


def run(ctx: StepContext) -> Mapping[str, Any]:
    from server.monitoring.columns import read_table

    step = ctx.step
    label = typed(step, "label", str, None)
    prediction = typed(step, "prediction", str, "output")
    threshold = float(typed(step, "decision_threshold", (int, float), 0.5))
    bounds_min: dict[str, float] = step.params.get("min", {})
    bounds_max: dict[str, float] = step.params.get("max", {})
    names = list(string_list(step, "metrics") or ()) or sorted({*bounds_min, *bounds_max})
    if not names:
        raise StepFailed(f"{step.where('metrics')}: name at least one metric")
    try:
        table = read_table(str(ctx.inputs["scored"]), [label, prediction])
    except SluiceError as exc:
        raise StepFailed(f"step '{step.name}': {exc.message}") from exc
    for column, field in ((label, "label"), (prediction, "prediction")):
        if column not in table.column_names:
            raise StepFailed(f"{step.where(field)}: column '{column}' is not in the scored data")
    labels = table.column(label).to_numpy().astype(np.float64)
    scores = _matrix(table.column(prediction))
    results = {name: METRICS[name](labels, scores, threshold) for name in names}
    failures = [
        f"{name} {results[name]:.4f} < {low}"
        for name, low in bounds_min.items()
        if name in results and results[name] < low
    ] + [
        f"{name} {results[name]:.4f} > {high}"
        for name, high in bounds_max.items()
        if name in results and results[name] > high
    ]
    body = {"rows": len(labels), "metrics": results, "failures": failures}
    text = json.dumps(body, indent=2) + "\n"
    if failures:
        (ctx.scratch / "metrics.json").write_text(text)
        raise StepFailed(f"step '{step.name}': threshold crossed: {'; '.join(failures)}")
    ctx.outputs["metrics"].write_text(text)
    return results


def _matrix(column: Any) -> Array:
    import pyarrow as pa

    combined = column.combine_chunks()
    if pa.types.is_fixed_size_list(combined.type) or pa.types.is_list(combined.type):
        width = combined.type.list_size if pa.types.is_fixed_size_list(combined.type) else None
        flat = combined.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
        matrix: Array = flat.reshape(len(combined), width or -1)
        return matrix
    return np.asarray(combined.to_numpy(zero_copy_only=False), dtype=np.float64)


KIND = StepKind(
    name="evaluate",
    run=run,
    params=frozenset({"label", "prediction", "metrics", "min", "max", "decision_threshold"}),
    required_params=frozenset({"label"}),
    inputs=frozenset({"scored"}),
    required_inputs=frozenset({"scored"}),
    required_outputs=frozenset({"metrics"}),
    check=_check,
)
