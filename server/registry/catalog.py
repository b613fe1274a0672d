"""The registry as the engine's ``Catalog``: serve the deployed versions, default to the
``production`` alias (else the highest deployed), record loads and failures in the audit trail.

One registry connection shared by the executor threads that call in, behind a lock.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from server.engine.repository import CONFIG_FILE, ModelPlan, ModelSource
from server.errors import ConfigError
from server.settings import ModelConfig

from . import open_registry
from .artifacts import BASELINE_FILE, MODEL_FILE
from .records import VersionInfo
from .registry import Registry
from .rollouts import Rollout, Rollouts

log = logging.getLogger(__name__)

T = TypeVar("T")


class RegistryCatalog:
    def __init__(
        self,
        repository: Path,
        database: str | None,
        environ: Mapping[str, str],
        default_config: ModelConfig | None = None,
    ) -> None:
        self.repository = repository
        self.registry = open_registry(repository, database, environ)
        if not self.registry.artifacts.local:
            raise ConfigError("serving from a registry needs its artifacts on a local filesystem")
        self.default_config = default_config or ModelConfig()
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self.registry.close()

    def names(self) -> list[str]:
        with self._lock:
            return self.registry.names()

    def versions(self, name: str) -> list[str]:
        with self._lock:
            return [str(i.version) for i in self.registry.search(name) if i.name == name]

    def changes(self) -> int:
        with self._lock:
            return self.registry.changes()

    def plans(self) -> dict[str, ModelPlan]:
        with self._lock:
            served = self.registry.served()
            rollouts = {r.name: r for r in Rollouts(self.registry).active()}
        plans = {}
        for model in served:
            sources = {str(v.version): self._source(v) for v in model.versions}
            plan = ModelPlan(model.name, sources, str(model.default))
            rollout = rollouts.get(model.name)
            if rollout is not None:
                plan = _with_rollout(plan, rollout)
            plans[model.name] = plan
        return plans

    def call(self, action: Callable[[Registry], T]) -> T:
        """Run ``action`` on the shared registry connection (from an executor thread)."""
        with self._lock:
            return action(self.registry)

    def emit(self, type: str, subject: str, data: dict[str, Any]) -> None:
        """An alert (drift detected or resolved) as an event through the registry's outbox,
        so webhooks receive it like any lifecycle event. Also logged."""
        log.warning("%s %s: %s", type, subject, data)
        with self._lock:
            self.registry.emit(type, subject, data)

    def report(self, action: str, name: str, version: str | None, reason: str, actor: str) -> None:
        number = int(version) if version and version.isdigit() else None
        with self._lock:
            self.registry.record(action, name, number, actor=actor, reason=reason)

    def _source(self, info: VersionInfo) -> ModelSource:
        directory = Path(self.registry.artifacts.version_dir(info.name, info.version))
        config = self.default_config
        own = directory / CONFIG_FILE
        shared = self.repository / info.name / CONFIG_FILE
        if any(f.name == CONFIG_FILE for f in info.files):
            config = ModelConfig.from_file(own)
        elif shared.is_file():
            config = ModelConfig.from_file(shared)
        registered = directory / BASELINE_FILE
        if config.drift.enabled and not config.drift.baseline and registered.is_file():
            # Online drift against the baseline registered with this version.
            drift = dataclasses.replace(config.drift, baseline=str(registered))
            config = dataclasses.replace(config, drift=drift)
        return ModelSource(
            info.name, str(info.version), directory / MODEL_FILE, config, info.sha256
        )


def _with_rollout(plan: ModelPlan, rollout: Rollout) -> ModelPlan:
    """The plan with the rollout's split: the baseline serves requests without a version
    (default), the candidate gets its weight and the mirrored copies."""
    baseline, candidate = str(rollout.baseline), str(rollout.candidate)
    if baseline not in plan.versions or candidate not in plan.versions:
        return plan  # one of them was undeployed meanwhile: serve as without a rollout
    policy = rollout.policy
    return dataclasses.replace(
        plan,
        default=baseline,
        weights={baseline: 100 - rollout.weight, candidate: rollout.weight},
        mirror=candidate if policy.mirror else "",
        mirror_percent=policy.mirror,
        sticky=policy.sticky,
    )
