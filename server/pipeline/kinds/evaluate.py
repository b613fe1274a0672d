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

Against the deployed version, on the same data (``inputs.data``: features and the label):

    against = "fraud@production"    # NAME[@ALIAS|:VERSION] in the registry of ``repository``
    repository = "models"
    max_regression = { auc = 0.01 } # fail when this much worse than the deployed version
    features = ["x0", "x1"]         # the feature columns of inputs.data, as for ``score``

The deployed version scores ``inputs.data`` with ``sluice score``; its metrics and the
differences go into the output. With nothing deployed yet (no such alias) there is nothing to
compare and the step says so. The registry changes outside the pipeline, so such a step
should be ``deterministic = false``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server.errors import SluiceError
from server.pipeline.kinds.base import StepContext, StepFailed, StepKind, string_list, typed
from server.pipeline.spec import PipelineError, Step

METRIC_NAMES = ("accuracy", "auc", "log_loss", "rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


def _check(step: Step) -> None:
    names = string_list(step, "metrics") or ()
    for name in names:
        if name not in METRIC_NAMES:
            raise PipelineError(
                f"{step.where('metrics')}: unknown metric '{name}' "
                f"(known: {', '.join(METRIC_NAMES)})"
            )
    if "against" in step.params and "data" not in step.inputs:
        raise PipelineError(f"{step.where('against')}: needs inputs.data (features and label)")
    if "data" in step.inputs and "against" not in step.params:
        raise PipelineError(f"{step.where('inputs.data')}: only read with 'against'")
    for bound in ("min", "max", "max_regression"):
        table = step.params.get(bound, {})
        if not isinstance(table, dict):
            raise PipelineError(f"{step.where(bound)}: must be a table METRIC = number")
        for name, value in table.items():
            if name not in METRIC_NAMES:
                raise PipelineError(f"{step.where(bound + '.' + name)}: unknown metric")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PipelineError(f"{step.where(bound + '.' + name)}: must be a number")


def run(ctx: StepContext) -> Mapping[str, Any]:
    step = ctx.step
    label = typed(step, "label", str, None)
    bounds_min: dict[str, float] = step.params.get("min", {})
    bounds_max: dict[str, float] = step.params.get("max", {})
    tolerance: dict[str, float] = step.params.get("max_regression", {})
    names = list(string_list(step, "metrics") or ()) or sorted(
        {*bounds_min, *bounds_max, *tolerance}
    )
    if not names:
        raise StepFailed(f"{step.where('metrics')}: name at least one metric")
    rows, results = _metrics(ctx, ctx.inputs["scored"], label, names)
    failures = [
        f"{name} {results[name]:.4f} < {low}"
        for name, low in bounds_min.items()
        if name in results and results[name] < low
    ] + [
        f"{name} {results[name]:.4f} > {high}"
        for name, high in bounds_max.items()
        if name in results and results[name] > high
    ]
    body: dict[str, Any] = {"rows": rows, "metrics": results, "failures": failures}
    if "against" in step.params:
        deployed = _deployed(ctx, label, names)
        body["deployed"] = deployed
        if deployed is not None:
            for name, allowed in tolerance.items():
                worse = deployed["regression"].get(name, 0.0)
                if worse > allowed:
                    failures.append(
                        f"{name} {results[name]:.4f} is {worse:.4f} worse than deployed "
                        f"version {deployed['version']} ({deployed['metrics'][name]:.4f}; "
                        f"allowed {allowed})"
                    )
    text = json.dumps(body, indent=2) + "\n"
    if failures:
        (ctx.scratch / "metrics.json").write_text(text)
        raise StepFailed(f"step '{step.name}': threshold crossed: {'; '.join(failures)}")
    ctx.outputs["metrics"].write_text(text)
    return results


def _metrics(
    ctx: StepContext, scored: Path, label: str, names: list[str]
) -> tuple[int, dict[str, float]]:
    import numpy as np

    from server.evaluation import METRICS
    from server.monitoring.columns import read_table

    step = ctx.step
    prediction = typed(step, "prediction", str, "output")
    threshold = float(typed(step, "decision_threshold", (int, float), 0.5))
    try:
        table = read_table(str(scored), [label, prediction])
    except SluiceError as exc:
        raise StepFailed(f"step '{step.name}': {exc.message}") from exc
    for column, field in ((label, "label"), (prediction, "prediction")):
        if column not in table.column_names:
            raise StepFailed(f"{step.where(field)}: column '{column}' is not in the scored data")
    labels = table.column(label).to_numpy().astype(np.float64)
    scores = _matrix(table.column(prediction))
    try:
        return len(labels), {name: METRICS[name](labels, scores, threshold) for name in names}
    except SluiceError as exc:
        raise StepFailed(f"step '{step.name}': {exc.message}") from exc


def _deployed(ctx: StepContext, label: str, names: list[str]) -> dict[str, Any] | None:
    """The deployed version's metrics on ``inputs.data`` and how much worse the step's model
    is (positive: worse); None when nothing is deployed under that name or alias."""
    from server.errors import ModelNotFound
    from server.registry import exists as registry_exists
    from server.scoring import ScoreOptions, score

    step = ctx.step
    spec = typed(step, "against", str, None)
    repository = ctx.pipeline.root / typed(step, "repository", str, "models")
    if not registry_exists(repository):
        return None  # no registry yet: nothing has been deployed
    output = ctx.scratch / "deployed"
    try:
        summary = score(
            ScoreOptions(
                model=spec,
                inputs=(ctx.inputs["data"],),
                output=output,
                repository=repository,
                features=string_list(step, "features"),
                keep=(label,),
                overwrite=True,
                progress=False,
            )
        )
    except ModelNotFound:
        return None
    except SluiceError as exc:
        raise StepFailed(f"step '{step.name}': scoring with {spec}: {exc.message}") from exc
    _, theirs = _metrics(ctx, output, label, names)
    ours = _metrics(ctx, ctx.inputs["scored"], label, names)[1]
    regression = {
        name: (ours[name] - theirs[name])
        if name in LOWER_IS_BETTER
        else (theirs[name] - ours[name])
        for name in names
    }
    return {
        "model": spec,
        "version": summary["model_version"],
        "metrics": theirs,
        "regression": regression,
    }


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
    params=frozenset(
        {
            "label",
            "prediction",
            "metrics",
            "min",
            "max",
            "decision_threshold",
            "against",
            "repository",
            "max_regression",
            "features",
        }
    ),
    required_params=frozenset({"label"}),
    inputs=frozenset({"scored", "data"}),
    required_inputs=frozenset({"scored"}),
    required_outputs=frozenset({"metrics"}),
    check=_check,
)
