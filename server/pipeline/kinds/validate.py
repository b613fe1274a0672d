"""``kind = "validate"``: schema and value checks of ``inputs.data`` (Parquet/Arrow), written
to ``outputs.report`` (JSON); the run fails with the report when a check fails.

- against ``inputs.model`` (an .onnx file): the columns map onto the model's inputs exactly as
  ``sluice score`` would map them (names, numeric types, widths; ``features``/``keep``);
- against ``inputs.baseline`` (reference data): every reference column is present with the same
  type, and at most ``max_out_of_range_rate`` of its values fall outside the reference range;
- ``ranges = { col = [low, high] }``: explicit bounds, same rate;
- every checked column has at most ``max_null_rate`` nulls (NaN counts as null).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from server.errors import SluiceError
from server.pipeline.kinds.base import StepContext, StepFailed, StepKind, string_list, typed
from server.pipeline.spec import PipelineError, Step


def _check(step: Step) -> None:
    ranges = step.params.get("ranges", {})
    if not isinstance(ranges, dict):
        raise PipelineError(f"{step.where('ranges')}: must be a table COLUMN = [low, high]")
    for name, bounds in ranges.items():
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
            or bounds[0] > bounds[1]
        ):
            raise PipelineError(f"{step.where('ranges.' + name)}: must be [low, high] numbers")
    for name in ("max_null_rate", "max_out_of_range_rate"):
        rate = typed(step, name, (int, float), 0.0)
        if not 0.0 <= rate <= 1.0:
            raise PipelineError(f"{step.where(name)}: must be between 0 and 1")


def run(ctx: StepContext) -> Mapping[str, Any]:
    import pyarrow.compute as pc

    from server.monitoring.columns import read_table

    step = ctx.step
    failures: list[str] = []
    try:
        data = read_table(str(ctx.inputs["data"]))
    except SluiceError as exc:
        raise StepFailed(f"step '{step.name}': {exc.message}") from exc
    bounds: dict[str, tuple[float, float]] = {
        k: (float(v[0]), float(v[1])) for k, v in step.params.get("ranges", {}).items()
    }
    checked = set(bounds)
    if "model" in ctx.inputs:
        failures += _model_check(ctx, data.schema)
    if "baseline" in ctx.inputs:
        reference = read_table(str(ctx.inputs["baseline"]))
        for field in reference.schema:
            checked.add(field.name)
            index = data.schema.get_field_index(field.name)
            if index < 0:
                failures.append(f"column '{field.name}' is missing")
            elif data.schema.field(index).type != field.type:
                found = data.schema.field(index).type
                failures.append(f"column '{field.name}' is {found}, the baseline has {field.type}")
            elif _numeric(field.type) and field.name not in bounds:
                low_high = pc.min_max(reference.column(field.name))
                low, high = low_high["min"].as_py(), low_high["max"].as_py()
                if low is not None:
                    bounds[field.name] = (float(low), float(high))
    columns: dict[str, dict[str, Any]] = {}
    max_nulls = float(typed(step, "max_null_rate", (int, float), 0.0))
    max_outside = float(typed(step, "max_out_of_range_rate", (int, float), 0.0))
    rows = data.num_rows
    for name in sorted(checked & set(data.column_names)):
        column = data.column(name)
        nulls = column.null_count
        if _floating(column.type) and rows:
            nulls += pc.sum(pc.is_nan(column)).as_py() or 0
        entry: dict[str, Any] = {"type": str(column.type), "null_rate": nulls / rows if rows else 0}
        if entry["null_rate"] > max_nulls:
            failures.append(f"column '{name}': null rate {entry['null_rate']:.4f} > {max_nulls}")
        if name in bounds and _numeric(column.type) and rows:
            low, high = bounds[name]
            outside = pc.sum(pc.or_(pc.less(column, low), pc.greater(column, high))).as_py() or 0
            entry["range"] = [low, high]
            entry["out_of_range_rate"] = outside / rows
            if entry["out_of_range_rate"] > max_outside:
                failures.append(
                    f"column '{name}': {entry['out_of_range_rate']:.4f} of values outside "
                    f"[{low:g}, {high:g}] > {max_outside}"
                )
        columns[name] = entry
    report = {"rows": rows, "columns": columns, "failures": failures, "passed": not failures}
    text = json.dumps(report, indent=2) + "\n"
    if failures:
        (ctx.scratch / "report.json").write_text(text)
        shown = "; ".join(failures[:5]) + (
            f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        )
        raise StepFailed(
            f"step '{step.name}': {len(failures)} check(s) failed: {shown} "
            f"(report in {ctx.scratch / 'report.json'})"
        )
    ctx.outputs["report"].write_text(text)
    return {"rows": rows, "columns": len(columns), "passed": True}


def _model_check(ctx: StepContext, schema: Any) -> list[str]:
    from server.engine.session import OrtSession
    from server.scoring.mapping import build_mapping
    from server.settings import RuntimeConfig

    try:
        session = OrtSession(ctx.inputs["model"], RuntimeConfig(), ctx.step.name)
        features = string_list(ctx.step, "features")
        build_mapping(schema, session.inputs, features, string_list(ctx.step, "keep") or ())
    except SluiceError as exc:
        return [f"model inputs: {exc.message}"]
    return []


def _numeric(arrow_type: Any) -> bool:
    import pyarrow.types as pt

    return bool(pt.is_integer(arrow_type) or pt.is_floating(arrow_type))


def _floating(arrow_type: Any) -> bool:
    import pyarrow.types as pt

    return bool(pt.is_floating(arrow_type))


KIND = StepKind(
    name="validate",
    run=run,
    params=frozenset({"ranges", "max_null_rate", "max_out_of_range_rate", "features", "keep"}),
    inputs=frozenset({"data", "model", "baseline"}),
    required_inputs=frozenset({"data"}),
    required_outputs=frozenset({"report"}),
    check=_check,
)
