"""``kind = "drift"``: ``sluice drift`` of ``inputs.current`` against ``inputs.reference``
(data, or a baseline file) written to ``outputs.report`` (JSON) and, when declared,
``outputs.html``. ``fail_on = "alert"`` (the default) fails the run when the dataset drifts;
``"never"`` only reports. The rule's fields are the command's flags.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from server.errors import SluiceError
from server.pipeline.kinds.base import StepContext, StepFailed, StepKind, string_list, typed
from server.pipeline.spec import PipelineError, Step

_RULE: dict[str, type | tuple[type, ...]] = {
    "numeric_statistic": str,
    "numeric_threshold": (int, float),
    "categorical_statistic": str,
    "categorical_threshold": (int, float),
    "small_sample_rows": int,
    "p_value_threshold": (int, float),
    "dataset_share": (int, float),
}


def _check(step: Step) -> None:
    if step.params.get("fail_on", "alert") not in ("alert", "never"):
        raise PipelineError(f'{step.where("fail_on")}: must be "alert" or "never"')


def run(ctx: StepContext) -> Mapping[str, Any]:
    from server.monitoring.baseline import BaselineOptions, is_baseline_file, load_baseline
    from server.monitoring.columns import read_table
    from server.monitoring.drift import DriftRule
    from server.monitoring.html import render_html
    from server.monitoring.report import compare, report_json
    from server.monitoring.table import format_table

    step = ctx.step
    features = string_list(step, "features")
    reference_path = str(ctx.inputs["reference"])
    try:
        rule = DriftRule(
            **{k: typed(step, k, t, None) for k, t in _RULE.items() if k in step.params}
        )
        options = BaselineOptions(
            typed(step, "sample_cap", int, 1_000_000), typed(step, "seed", int, 0)
        )
        reference = (
            load_baseline(reference_path)
            if is_baseline_file(reference_path)
            else read_table(reference_path, features)
        )
        current = read_table(str(ctx.inputs["current"]), features)
        report = compare(reference, current, rule, options, features)
    except SluiceError as exc:
        raise StepFailed(f"step '{step.name}': {exc.message}") from exc
    body = report_json(report)
    text = json.dumps(body, indent=2) + "\n"
    ctx.outputs["report"].write_text(text)
    if "html" in ctx.outputs:
        ctx.outputs["html"].write_text(render_html(report))
    (ctx.scratch / "drift.txt").write_text(format_table(report) + "\n")
    drifted = sorted(n for n, f in report.features.items() if f.drifted)
    if report.dataset_drifted and step.params.get("fail_on", "alert") == "alert":
        (ctx.scratch / "report.json").write_text(text)
        raise StepFailed(
            f"step '{step.name}': the dataset drifted (share {report.drift_share:.2f}; "
            f"features {', '.join(drifted)}); report in {ctx.scratch / 'report.json'}"
        )
    return {"dataset_drifted": report.dataset_drifted, "drifted_features": drifted}


KIND = StepKind(
    name="drift",
    run=run,
    params=frozenset({"fail_on", "features", "sample_cap", "seed", *_RULE}),
    inputs=frozenset({"reference", "current"}),
    required_inputs=frozenset({"reference", "current"}),
    required_outputs=frozenset({"report"}),
    check=_check,
)
