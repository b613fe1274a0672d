"""``kind = "score"``: ``sluice score`` of ``inputs.data`` with ``inputs.model`` into
``outputs.scored``, on the local engine or Ray (``engine = "ray"``). Its fields are the
command's flags (``batch_size``, ``on_error``, ``max_errors``, ``features``, ``keep``, ...).
A killed attempt's partial output is kept, so the next run resumes it file by file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.errors import SluiceError
from server.pipeline.kinds.base import StepContext, StepFailed, StepKind, string_list, typed

_PARAMS = frozenset(
    {
        "features",
        "keep",
        "batch_size",
        "on_error",
        "max_errors",
        "engine",
        "instances",
        "intra_op_threads",
        "read_ahead",
    }
)


def run(ctx: StepContext) -> Mapping[str, Any]:
    from server.scoring import ScoreOptions, score  # pyarrow and ONNX Runtime: only when run

    step = ctx.step
    try:
        options = ScoreOptions(
            model=str(ctx.inputs["model"]),
            inputs=(ctx.inputs["data"],),
            output=ctx.outputs["scored"],
            features=string_list(step, "features"),
            keep=string_list(step, "keep") or (),
            batch_size=typed(step, "batch_size", int, 4096),
            on_error=typed(step, "on_error", str, "fail"),
            max_errors=typed(step, "max_errors", int, None),
            engine=typed(step, "engine", str, "local"),
            instances=typed(step, "instances", int, None),
            intra_op_threads=typed(step, "intra_op_threads", int, None),
            read_ahead=typed(step, "read_ahead", int, 4),
            progress=False,
        )
        summary = score(options)
    except SluiceError as exc:
        raise StepFailed(f"step '{step.name}': {exc.message}") from exc
    return dict(summary)


KIND = StepKind(
    name="score",
    run=run,
    params=_PARAMS,
    inputs=frozenset({"model", "data"}),
    required_inputs=frozenset({"model", "data"}),
    required_outputs=frozenset({"scored"}),
    resumable=True,
)
