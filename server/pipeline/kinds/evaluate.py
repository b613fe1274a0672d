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
from collections.abc import Mapping
from typing import Any

from server.errors import SluiceError
from server.pipeline.kinds.base import StepContext, StepFailed, StepKind, string_list, typed
from server.pipeline.spec import PipelineError, Step

METRIC_NAMES = ("accuracy", "auc", "log_loss", "rmse", "mae", "r2")


def _check(step: Step) -> None:
    names = string_list(step, "metrics") or ()
    for name in names:
        if name not in METRIC_NAMES:
            raise PipelineError(
                f"{step.where('metrics')}: unknown metric '{name}' "
                f"(known: {', '.join(METRIC_NAMES)})"
            )
    for bound in ("min", "max"):
        table = step.params.get(bound, {})
        if not isinstance(table, dict):
            raise PipelineError(f"{step.where(bound)}: must be a table METRIC = number")
        for name, value in table.items():
            if name not in METRIC_NAMES:
                raise PipelineError(f"{step.where(bound + '.' + name)}: unknown metric")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PipelineError(f"{step.where(bound + '.' + name)}: must be a number")


def run(ctx: StepContext) -> Mapping[str, Any]:
    import numpy as np

    from server.monitoring.columns import read_table
    from server.pipeline.metrics import METRICS

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


def _matrix(column: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    combined = column.combine_chunks()
    if pa.types.is_fixed_size_list(combined.type) or pa.types.is_list(combined.type):
        width = combined.type.list_size if pa.types.is_fixed_size_list(combined.type) else None
        flat = combined.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
        return flat.reshape(len(combined), width or -1)
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
