"""Where a worker's models run: the cores they may use, and how many workers share the
machine. ``"auto"`` runtime settings (instances, ORT threads) are resolved against it when the
engine reads its catalog, so every catalog (repository layout or registry) gets the same rule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from server.resources import usable_cores

from .repository import ModelPlan, ModelSource


@dataclass(frozen=True, slots=True)
class Placement:
    cores: int  # this worker's share of the cores the process may use
    workers: int = 1

    @classmethod
    def whole_process(cls) -> Placement:
        """One worker with every core this process may use (an engine built without one)."""
        return cls(usable_cores().count, 1)

    def plan(self, plan: ModelPlan) -> ModelPlan:
        """``plan`` with every version's "auto" runtime settings resolved for ``cores``.

        Deterministic, so a source read again compares equal and is not reloaded."""
        versions = {version: self.source(s) for version, s in plan.versions.items()}
        return dataclasses.replace(plan, versions=versions)

    def source(self, source: ModelSource) -> ModelSource:
        runtime = source.config.runtime.resolved(self.cores)
        return dataclasses.replace(
            source, config=dataclasses.replace(source.config, runtime=runtime)
        )
