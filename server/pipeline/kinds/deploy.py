"""``deploy``: serve the version a ``register`` step wrote (``replace = true`` undeploys the
others in the same transaction). Deploying a version already deployed changes nothing, so
``deterministic = false`` (run every time) is safe when a person may undeploy by hand."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from server.pipeline.kinds.base import StepContext, StepKind, typed


def run(ctx: StepContext) -> Mapping[str, Any]:
    from server.registry import open_registry

    step = ctx.step
    target = json.loads(ctx.inputs["version"].read_text())
    repository = ctx.pipeline.root / typed(step, "repository", str, None)
    with open_registry(repository, typed(step, "registry", str, None) or None) as registry:
        registry.deploy(
            target["name"],
            int(target["version"]),
            reason=f"sluice pipeline run {ctx.run_id}",
            actor=typed(step, "actor", str, "sluice pipeline"),
            replace=typed(step, "replace", bool, False),
            request_id=ctx.run_id,
        )
    body = {"name": target["name"], "version": int(target["version"])}
    ctx.outputs["deployed"].write_text(json.dumps(body) + "\n")
    return body


KIND = StepKind(
    name="deploy",
    run=run,
    params=frozenset({"repository", "registry", "actor", "replace"}),
    required_params=frozenset({"repository"}),
    inputs=frozenset({"version"}),
    required_inputs=frozenset({"version"}),
    required_outputs=frozenset({"deployed"}),
)
