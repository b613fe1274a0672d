"""Rollouts and leases in the registry: the traffic policy of a model whose new version is
being rolled out, stepped by one server at a time.

One row per model in ``rollouts`` while a rollout runs (its history is the audit trail);
every change to it is an audit row and an event, and advances the change counter so every
server reads the same weights within a poll. ``leases`` lets one process among many act.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from server.errors import Conflict, InvalidInput, ModelNotFound

from .database import Row, Tx
from .records import check_name, now

if TYPE_CHECKING:
    from .registry import Registry

PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """How a candidate version takes traffic and what makes it fail. Weights in percent."""

    canary: int = 10
    step: int = 10
    interval_s: float = 60.0
    mirror: int = 0
    sticky: str = ""
    max_error_rate: float = 0.01
    max_p99_ratio: float = 1.5
    max_disagreement: float = 0.01
    min_requests: int = 20

    def __post_init__(self) -> None:
        for what, value in (("canary", self.canary), ("mirror", self.mirror)):
            if not 0 <= value <= 100:
                raise InvalidInput(f"--{what} {value}: a weight is a percentage, 0..100")
        if not 1 <= self.step <= 100:
            raise InvalidInput(f"--step {self.step}: a step is a percentage, 1..100")
        if self.interval_s <= 0:
            raise InvalidInput(f"--interval {self.interval_s:g}s: must be positive")
        if not 0 <= self.max_error_rate <= 1 or not 0 <= self.max_disagreement <= 1:
            raise InvalidInput("--max-error-rate and --max-disagreement are fractions, 0..1")
        if self.max_p99_ratio < 1:
            raise InvalidInput(f"--max-p99-ratio {self.max_p99_ratio:g}: must be >= 1")
        if self.min_requests < 1:
            raise InvalidInput("min_requests must be >= 1")
        if self.sticky and (not self.sticky.isascii() or ":" in self.sticky):
            raise InvalidInput(f"--sticky '{self.sticky}': not an HTTP header name")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutPolicy:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Rollout:
    name: str
    baseline: int
    candidate: int
    weight: int  # percent of the requests without a version that the candidate gets
    policy: RolloutPolicy = field(default_factory=RolloutPolicy)
    started_at: str = ""
    updated_at: str = ""
    actor: str = ""

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "policy": asdict(self.policy)}


def _rollout(row: Row) -> Rollout:
    return Rollout(
        name=row["name"],
        baseline=int(row["baseline"]),
        candidate=int(row["candidate"]),
        weight=int(row["weight"]),
        policy=RolloutPolicy.from_json(orjson.loads(row["policy"])),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        actor=row["actor"],
    )


def validated(row: Row) -> bool:
    """Whether a ``versions`` row carries a passing validation of its own artifact."""
    if not row["validation"]:
        return False
    record = orjson.loads(row["validation"])
    return bool(record.get("passed")) and record.get("sha256", row["sha256"]) == row["sha256"]


def check_gate(row: Row, force: bool, reason: str) -> str:
    """Refuse promotion of an unvalidated version unless forced with a reason; returns the
    audit detail of a forced promotion."""
    if validated(row):
        return ""
    if not force:
        raise Conflict(
            f"model '{row['name']}' version {row['version']} has no passing validation record: "
            "run `sluice models validate` first (or --force with --reason)"
        )
    if not reason.strip():
        raise InvalidInput("--force needs --reason (it goes into the audit trail)")
    return "forced without a passing validation"


class Rollouts:
    """The rollout operations of one ``Registry`` (same connection, same transactions)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def start(
        self,
        name: str,
        candidate: int,
        policy: RolloutPolicy,
        *,
        actor: str = "",
        reason: str = "",
    ) -> Rollout:
        reg = self.registry
        with reg.db.write() as tx:
            info = reg._row(tx, name, candidate)
            if tx.one("SELECT name FROM rollouts WHERE name = ?", (name,)) is not None:
                raise Conflict(
                    f"model '{name}' already has a rollout in progress "
                    "(see --status; --abort or --promote it first)"
                )
            deployed = [
                int(r["version"])
                for r in tx.all("SELECT version FROM deployments WHERE name = ?", (name,))
            ]
            if candidate not in deployed:
                raise Conflict(
                    f"model '{name}' version {candidate} is not deployed: "
                    f"deploy it first (`sluice models deploy {name} --version {candidate}`)"
                )
            baseline = _baseline(tx, name, deployed)
            if baseline == candidate:
                raise Conflict(
                    f"model '{name}' version {candidate} already serves the requests "
                    "without a version: nothing to roll out (the rollout starts from the "
                    "deployed version the production alias points at)"
                )
            stamp = now()
            tx.execute(
                "INSERT INTO rollouts (name, baseline, candidate, weight, policy, started_at,"
                " updated_at, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    baseline,
                    candidate,
                    policy.canary,
                    orjson.dumps(asdict(policy)).decode(),
                    stamp,
                    stamp,
                    actor,
                ),
            )
            detail = f"from version {baseline}, weight {policy.canary}%, mirror {policy.mirror}%"
            reg._change(
                tx,
                "rollout_start",
                name,
                candidate,
                actor,
                reason,
                info["sha256"],
                detail=detail,
                event="io.sluice.rollout.started",
            )
            return self._get(tx, name)

    def get(self, name: str) -> Rollout:
        with self.registry.db.read() as tx:
            return self._get(tx, name)

    def active(self) -> list[Rollout]:
        with self.registry.db.read() as tx:
            return [_rollout(r) for r in tx.all("SELECT * FROM rollouts ORDER BY name")]

    def step(
        self, name: str, weight: int, *, actor: str = "", reason: str = "", expect: int = -1
    ) -> Rollout:
        """Set the candidate's weight; ``expect``: refuse unless it is still this weight (a
        controller that lost its lease must not undo another's step)."""
        if not 0 <= weight <= 100:
            raise InvalidInput(f"weight {weight}: a weight is a percentage, 0..100")
        reg = self.registry
        with reg.db.write() as tx:
            current = self._get(tx, name)
            if expect >= 0 and current.weight != expect:
                raise Conflict(f"model '{name}': the rollout's weight changed meanwhile")
            tx.execute(
                "UPDATE rollouts SET weight = ?, updated_at = ? WHERE name = ?",
                (weight, now(), name),
            )
            sha = reg._row(tx, name, current.candidate)["sha256"]
            reg._change(
                tx,
                "rollout_step",
                name,
                current.candidate,
                actor,
                reason,
                sha,
                detail=f"weight {current.weight}% -> {weight}%",
                event="io.sluice.rollout.stepped",
            )
            return self._get(tx, name)

    def promote(
        self, name: str, *, actor: str = "", reason: str = "", force: bool = False
    ) -> Rollout:
        """Move ``production`` to the candidate and undeploy the baseline (the servers drain
        it); refused without a passing validation unless forced with a reason."""
        reg = self.registry
        with reg.db.write() as tx:
            current = self._get(tx, name)
            row = reg._row(tx, name, current.candidate)
            forced = check_gate(row, force, reason)
            tx.execute("DELETE FROM rollouts WHERE name = ?", (name,))
            tx.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, PRODUCTION))
            tx.execute(
                "INSERT INTO aliases (name, alias, version) VALUES (?, ?, ?)",
                (name, PRODUCTION, current.candidate),
            )
            reg._change(
                tx,
                "alias",
                name,
                current.candidate,
                actor,
                reason,
                row["sha256"],
                detail=f"{PRODUCTION}{'; ' + forced if forced else ''}",
            )
            old = tx.execute(
                "DELETE FROM deployments WHERE name = ? AND version = ?",
                (name, current.baseline),
            )
            if old:
                sha = reg._row(tx, name, current.baseline)["sha256"]
                reg._change(
                    tx,
                    "undeploy",
                    name,
                    current.baseline,
                    actor,
                    reason,
                    sha,
                    detail=f"replaced by version {current.candidate} (rollout)",
                )
            reg._change(
                tx,
                "rollout_promote",
                name,
                current.candidate,
                actor,
                reason,
                row["sha256"],
                detail=f"version {current.baseline} -> {current.candidate}"
                + (f"; {forced}" if forced else ""),
                event="io.sluice.rollout.promoted",
            )
            return current

    def rollback(self, name: str, *, actor: str = "", reason: str = "") -> Rollout:
        """End the rollout: every request without a version goes back to the baseline. The
        candidate stays deployed for explicit-version callers."""
        reg = self.registry
        with reg.db.write() as tx:
            current = self._get(tx, name)
            tx.execute("DELETE FROM rollouts WHERE name = ?", (name,))
            sha = reg._row(tx, name, current.candidate)["sha256"]
            reg._change(
                tx,
                "rollout_rollback",
                name,
                current.candidate,
                actor,
                reason,
                sha,
                detail=f"weight {current.weight}% -> 0%, back to version {current.baseline}",
                event="io.sluice.rollout.rolled_back",
            )
            return current

    def lease(self, key: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease ``key`` for ``ttl_s``; False while another holds it."""
        moment = time.time()
        with self.registry.db.write() as tx:
            row = tx.one("SELECT holder, expires_at FROM leases WHERE name = ?", (key,))
            if row is None:
                tx.execute(
                    "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)",
                    (key, holder, moment + ttl_s),
                )
                return True
            if row["holder"] != holder and float(row["expires_at"]) > moment:
                return False
            tx.execute(
                "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ?",
                (holder, moment + ttl_s, key),
            )
            return True

    def report(self, holder: str, name: str, figures: dict[str, Any]) -> None:
        """Publish one serving process's figures for ``name``'s rollout: every process does,
        and the lease holder judges from all of them. Reports older than an hour go."""
        moment = time.time()
        text = orjson.dumps(figures).decode()
        with self.registry.db.write() as tx:
            tx.execute(
                "DELETE FROM rollout_figures WHERE (holder = ? AND name = ?) OR reported_at < ?",
                (holder, name, moment - 3600),
            )
            tx.execute(
                "INSERT INTO rollout_figures (holder, name, figures, reported_at) "
                "VALUES (?, ?, ?, ?)",
                (holder, name, text, moment),
            )

    def reported(self, name: str, within_s: float) -> dict[str, dict[str, Any]]:
        """Each process's latest figures for ``name``, when reported in the last
        ``within_s`` (a process that stopped reporting has stopped serving)."""
        with self.registry.db.read() as tx:
            rows = tx.all(
                "SELECT holder, figures FROM rollout_figures WHERE name = ? AND reported_at >= ?",
                (name, time.time() - within_s),
            )
        return {row["holder"]: orjson.loads(row["figures"]) for row in rows}

    def release(self, key: str, holder: str) -> None:
        with self.registry.db.write() as tx:
            tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (key, holder))

    def _get(self, tx: Tx, name: str) -> Rollout:
        check_name(name)
        row = tx.one("SELECT * FROM rollouts WHERE name = ?", (name,))
        if row is None:
            self.registry._require_model(tx, name)
            raise ModelNotFound(f"model '{name}' has no rollout in progress")
        return _rollout(row)


def _baseline(tx: Tx, name: str, deployed: list[int]) -> int:
    """The version requests without one get now: production when deployed, else the highest."""
    row = tx.one("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, PRODUCTION))
    if row is not None and int(row["version"]) in deployed:
        return int(row["version"])
    return max(deployed)
