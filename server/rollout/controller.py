"""The rollout controller: one per server, but only the holder of the registry's lease acts.

Every tick it reads the rollouts in progress and, for each, compares the candidate with the
baseline over the current step's window: error rate (candidate minus baseline), p99 of the
engine's request time (queue + compute), and the share of mirrored rows whose answers
disagree. Outside a limit it rolls back at once; after ``interval`` within them it steps the
weight up, and one interval after reaching 100% it promotes (production moves, the baseline is
undeployed and drained). Each decision is a registry change: an audit row and an event.

With monitoring on, the online drift states of each version's inputs are compared too: while
features fire for the candidate's inputs and not the baseline's, the split is not comparable
(a sticky header sent a different population), so the rollout holds instead of stepping up,
and says why.

Every serving process (each worker of ``--workers N``, each server on the registry) publishes
its counters for the models being rolled out to the registry every ``REPORT_S``; the lease
holder judges from the sum of what each process counted since the step began, so a version
that fails only on another worker's connections is seen. A process silent for ``FRESH_S`` has
stopped serving and no longer counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.engine.engine import Engine
from server.errors import Conflict, SluiceError
from server.registry import Registry
from server.registry.catalog import RegistryCatalog
from server.registry.rollouts import Rollout, Rollouts

from . import figures
from .figures import Counts

log = logging.getLogger(__name__)
LEASE = "rollout-controller"
# A p99 gap under this is scheduling noise: on the shared 2-core test host two identical
# versions' p99 over a few hundred sub-millisecond requests differed by up to 2.1 ms.
P99_NOISE_US = 5000.0
REPORT_S = 0.2
FRESH_S = 3.0
T = TypeVar("T")
# (model, version) -> the latest online drift evaluation as JSON, or None (monitoring off).
DriftReports = Callable[[str, str], "dict[str, Any] | None"]


@dataclass(slots=True)
class _Figures:
    """One process's counters for a rollout: the two versions' requests and the mirrored rows
    compared (totals since the process started)."""

    baseline: Counts = field(default_factory=Counts)
    candidate: Counts = field(default_factory=Counts)
    mirrored_rows: int = 0
    disagreeing: int = 0

    def minus(self, earlier: _Figures) -> _Figures:
        return _Figures(
            self.baseline.minus(earlier.baseline),
            self.candidate.minus(earlier.candidate),
            self.mirrored_rows - earlier.mirrored_rows,
            self.disagreeing - earlier.disagreeing,
        )

    def plus(self, other: _Figures) -> _Figures:
        return _Figures(
            self.baseline.plus(other.baseline),
            self.candidate.plus(other.candidate),
            self.mirrored_rows + other.mirrored_rows,
            self.disagreeing + other.disagreeing,
        )

    def below(self, other: _Figures) -> bool:
        return (
            self.baseline.below(other.baseline)
            or self.candidate.below(other.candidate)
            or self.mirrored_rows < other.mirrored_rows
            or self.disagreeing < other.disagreeing
        )

    @classmethod
    def of(cls, report: dict[str, Any], rollout: Rollout) -> _Figures:
        versions = report.get("versions", {})
        return cls(
            Counts.from_json(versions.get(str(rollout.baseline), {})),
            Counts.from_json(versions.get(str(rollout.candidate), {})),
            int(report.get("mirrored_rows", 0)),
            int(report.get("disagreeing", 0)),
        )


@dataclass(slots=True)
class _Window:
    """The current step: when it began, and each process's figures when first seen in it."""

    candidate: int
    weight: int
    started: float
    start: dict[str, _Figures]
    warned: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # "wait", "step", "promote", "rollback"
    reason: str


class Controller:
    def __init__(
        self,
        engine: Engine,
        catalog: RegistryCatalog,
        lease_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        drift: DriftReports | None = None,
    ) -> None:
        self.engine = engine
        self.catalog = catalog
        self.drift = drift
        self.lease_s = lease_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._mirrored: dict[str, tuple[int, int]] = {}  # model -> (rows, disagreeing) so far
        self._reported = -math.inf

    async def run(self) -> None:
        """Tick until cancelled; a registry that cannot be reached is retried."""
        while True:
            try:
                pause = await self.tick()
            except SluiceError as exc:
                log.warning("rollout controller: %s", exc.message)
                pause = 1.0
            await asyncio.sleep(pause)

    async def tick(self) -> float:
        """One look at every rollout; returns how long to wait before the next."""
        active = await self._call(lambda reg: Rollouts(reg).active())
        if not active:
            self._windows.clear()
            return 1.0
        ours = await self._report(active)
        if not await self._call(lambda reg: Rollouts(reg).lease(LEASE, self.holder, self.lease_s)):
            self._windows.clear()  # another process judges; start afresh if we take over
            return 1.0
        names = [r.name for r in active]
        reports = await self._call(
            lambda reg: {n: Rollouts(reg).reported(n, FRESH_S) for n in names}
        )
        for rollout in active:
            found = reports.get(rollout.name, {})
            found[self.holder] = ours[rollout.name]  # our own, fresher than the registry's
            await self._judge(rollout, found)
        # Failures act at once: a bad version is looked at four times a second.
        shortest = min(r.policy.interval_s for r in active)
        return min(0.25, max(0.02, shortest / 10))

    async def _report(self, active: list[Rollout]) -> dict[str, dict[str, Any]]:
        """This process's figures for each rollout; published every ``REPORT_S``."""
        found: dict[str, dict[str, Any]] = {}
        for rollout in active:
            name = rollout.name
            tally = self.engine.mirror.take(name)
            rows, disagreeing = self._mirrored.get(name, (0, 0))
            rows, disagreeing = rows + tally.rows, disagreeing + tally.disagreeing
            self._mirrored[name] = (rows, disagreeing)
            counts = figures.read(self.engine.metrics.registry, name)
            found[name] = {
                "versions": {version: c.to_json() for (_, version), c in counts.items()},
                "mirrored_rows": rows,
                "disagreeing": disagreeing,
            }
        if time.monotonic() - self._reported >= REPORT_S:
            self._reported = time.monotonic()
            await self._call(lambda reg: _publish(Rollouts(reg), self.holder, found))
        return found

    async def _judge(self, rollout: Rollout, reports: dict[str, dict[str, Any]]) -> None:
        name = rollout.name
        current = {holder: _Figures.of(report, rollout) for holder, report in reports.items()}
        window = self._windows.get(name)
        if window is None or (window.candidate, window.weight) != (
            rollout.candidate,
            rollout.weight,
        ):
            self._windows[name] = _Window(
                rollout.candidate, rollout.weight, self._clock(), dict(current)
            )
            return
        total = _Figures()
        for holder, figures_now in current.items():
            # A process first seen now counts from now; one whose counters went down
            # restarted, and everything it counted since is in the window.
            start = window.start.setdefault(holder, figures_now)
            if figures_now.below(start):
                start = window.start[holder] = _Figures()
            total = total.plus(figures_now.minus(start))
        verdict = judge(
            rollout,
            total.baseline,
            total.candidate,
            total.mirrored_rows,
            total.disagreeing,
            self._clock() - window.started,
            drifting_only(self.drift, name, rollout.baseline, rollout.candidate),
        )
        if verdict.action == "wait":
            if verdict.reason and verdict.reason not in window.warned:
                window.warned.add(verdict.reason)
                log.warning("rollout of %s holds: %s", name, verdict.reason)
            return
        await self._act(rollout, verdict, window)

    async def _act(self, rollout: Rollout, verdict: Verdict, window: _Window) -> None:
        name, actor = rollout.name, "sluice-rollout"
        try:
            if verdict.action == "rollback":
                await self._call(
                    lambda reg: Rollouts(reg).rollback(name, actor=actor, reason=verdict.reason)
                )
                log.warning(
                    "rollout of %s version %d rolled back: %s",
                    name,
                    rollout.candidate,
                    verdict.reason,
                )
            elif verdict.action == "promote":
                await self._call(
                    lambda reg: Rollouts(reg).promote(name, actor=actor, reason=verdict.reason)
                )
                log.info("rollout of %s version %d promoted", name, rollout.candidate)
            else:
                weight = min(100, rollout.weight + rollout.policy.step)
                await self._call(
                    lambda reg: Rollouts(reg).step(
                        name, weight, actor=actor, reason=verdict.reason, expect=rollout.weight
                    )
                )
        except Conflict as exc:  # no passing validation, or another change won
            if exc.message not in window.warned:
                window.warned.add(exc.message)
                log.warning("rollout of %s: cannot %s: %s", name, verdict.action, exc.message)
            return
        self._windows.pop(name, None)
        await self.engine.sync()  # this process follows at once; the others within a poll

    async def _call(self, action: Callable[[Registry], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.catalog.call, action)


def _publish(rollouts: Rollouts, holder: str, found: dict[str, dict[str, Any]]) -> None:
    for name, report in found.items():
        rollouts.report(holder, name, report)


def drifting_only(
    drift: DriftReports | None, name: str, baseline: int, candidate: int
) -> tuple[str, ...]:
    """Features whose online drift fires for the candidate's inputs and not the baseline's."""
    if drift is None:
        return ()

    def firing(version: int) -> set[str]:
        report = drift(name, str(version)) or {}
        states = report.get("states", {})
        return {feature for feature, state in states.items() if state == "firing"}

    return tuple(sorted(firing(candidate) - firing(baseline)))


def judge(
    rollout: Rollout,
    baseline: Counts,
    candidate: Counts,
    mirrored_rows: int,
    disagreeing: int,
    elapsed_s: float,
    drifting: tuple[str, ...] = (),
) -> Verdict:
    """The decision for one window. Failures and disagreement act at once, latency and
    stepping up only at the end of an interval."""
    policy = rollout.policy
    enough = policy.min_requests
    if candidate.requests >= enough:
        excess = candidate.error_rate - baseline.error_rate
        if excess > policy.max_error_rate:
            return Verdict(
                "rollback",
                f"error rate {candidate.error_rate:.2%} against {baseline.error_rate:.2%} "
                f"(over {candidate.requests} requests; limit +{policy.max_error_rate:.2%})",
            )
    if mirrored_rows >= enough and disagreeing / mirrored_rows > policy.max_disagreement:
        return Verdict(
            "rollback",
            f"{disagreeing} of {mirrored_rows} mirrored rows disagree "
            f"({disagreeing / mirrored_rows:.2%}; limit {policy.max_disagreement:.2%})",
        )
    if elapsed_s < policy.interval_s:
        return Verdict("wait", "")
    ours, theirs = candidate.quantile(0.99), baseline.quantile(0.99)
    if (
        candidate.requests >= enough
        and baseline.requests >= enough
        and not math.isnan(ours)
        and not math.isnan(theirs)
        and ours > policy.max_p99_ratio * max(theirs, 1.0)
        and ours - theirs > P99_NOISE_US
    ):
        return Verdict(
            "rollback",
            f"p99 {ours / 1000:.2f} ms against {theirs / 1000:.2f} ms "
            f"(ratio {ours / max(theirs, 1.0):.2f}; limit {policy.max_p99_ratio:g})",
        )
    evidence = candidate.requests >= enough or (rollout.weight == 0 and mirrored_rows >= enough)
    if not evidence:
        return Verdict("wait", "")
    if drifting:
        return Verdict(
            "wait",
            f"the candidate's inputs drift on {', '.join(drifting)} and the baseline's do not: "
            "the versions see different traffic, so they are not compared",
        )
    summary = (
        f"{candidate.requests} requests, error rate {candidate.error_rate:.2%}, "
        f"p99 {_ms(ours)} vs {_ms(theirs)}, "
        f"{disagreeing}/{mirrored_rows} mirrored rows disagree"
    )
    if rollout.weight >= 100:
        return Verdict("promote", summary)
    return Verdict("step", summary)


def _ms(us: float) -> str:
    return "-" if math.isnan(us) else f"{us / 1000:.2f} ms"
