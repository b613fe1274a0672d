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

The figures are this process's (with ``--workers N`` the lease holder judges from its own
share of the traffic, a sample of the whole).
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
T = TypeVar("T")
# (model, version) -> the latest online drift evaluation as JSON, or None (monitoring off).
DriftReports = Callable[[str, str], "dict[str, Any] | None"]


@dataclass(slots=True)
class _Window:
    """The start of the current step: what the counters read then, and mirror tallies since."""

    candidate: int
    weight: int
    started: float
    baseline_counts: Counts
    candidate_counts: Counts
    mirrored_rows: int = 0
    disagreeing: int = 0
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
        if not await self._call(lambda reg: Rollouts(reg).lease(LEASE, self.holder, self.lease_s)):
            self._windows.clear()  # another process judges; start afresh if we take over
            return 1.0
        for rollout in active:
            await self._judge(rollout)
        # Failures act at once: a bad version is looked at four times a second.
        shortest = min(r.policy.interval_s for r in active)
        return min(0.25, max(0.02, shortest / 10))

    async def _judge(self, rollout: Rollout) -> None:
        name = rollout.name
        counts = figures.read(self.engine.metrics.registry, name)
        baseline = counts.get((name, str(rollout.baseline)), Counts())
        candidate = counts.get((name, str(rollout.candidate)), Counts())
        window = self._windows.get(name)
        if window is None or (window.candidate, window.weight) != (
            rollout.candidate,
            rollout.weight,
        ):
            self.engine.mirror.take(name)
            self._windows[name] = _Window(
                rollout.candidate, rollout.weight, self._clock(), baseline, candidate
            )
            return
        tally = self.engine.mirror.take(name)
        window.mirrored_rows += tally.rows
        window.disagreeing += tally.disagreeing
        verdict = judge(
            rollout,
            baseline.minus(window.baseline_counts),
            candidate.minus(window.candidate_counts),
            window.mirrored_rows,
            window.disagreeing,
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
