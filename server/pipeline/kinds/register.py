"""``register``: the step's model becomes the next version of ``name`` in the registry; the
audit trail records the pipeline run as the reason. Writes ``{"name", "version", "sha256"}``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from server.pipeline.kinds.base import StepContext, StepKind, typed


def run(ctx: StepContext) -> Mapping[str, Any]:
    from server.registry import open_registry

    step = ctx.step
    name = typed(step, "name", str, None)
    tags = step.params.get("tags", {})
    repository = ctx.pipeline.root / typed(step, "repository", str, None)
    with open_registry(repository, typed(step, "registry", str, None) or None) as registry:
        info = registry.register(
            name,
            ctx.inputs["model"],
            tags={str(k): str(v) for k, v in dict(tags).items()},
            description=typed(step, "description", str, ""),
            reason=f"sluice pipeline run {ctx.run_id}",
            actor=typed(step, "actor", str, "sluice pipeline"),
            request_id=ctx.run_id,
        )
    body = {"name": info.name, "version": info.version, "sha256": info.sha256}
    ctx.outputs["version"].write_text(json.dumps(body) + "\n")
    return body


KIND = StepKind(
    name="register",
    run=run,
    params=frozenset({"repository", "registry", "name", "tags", "description", "actor"}),
    required_params=frozenset({"repository", "name"}),
    inputs=frozenset({"model", "metrics"}),
    required_inputs=frozenset({"model"}),
    required_outputs=frozenset({"version"}),
)
