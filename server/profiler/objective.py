"""Which trial wins, and the recommendation it becomes.

With an SLO: the highest throughput whose p99 meets it (and whose peak memory fits
``--memory-mb``). Without one: the knee of throughput against p99 (below). No trial meeting
the SLO is an answer too: the closest trial (lowest p99), flagged as not meeting it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.profiler.space import Knobs
from server.profiler.trial import Trial

# Memory recommended above the peak resident memory measured: the arena grows with batch
# shapes the trials may not have sent, and a container killed at its limit drops requests.
MEMORY_HEADROOM = 0.25


@dataclass(frozen=True, slots=True)
class Objective:
    slo_p99_ms: float | None = None
    memory_mb: float | None = None

    def fits(self, trial: Trial) -> bool:
        """Within ``--memory-mb`` and without failed requests."""
        memory_ok = self.memory_mb is None or trial.peak_rss_mb <= self.memory_mb
        return memory_ok and trial.errors == 0 and trial.throughput > 0

    def meets(self, trial: Trial) -> bool:
        return self.fits(trial) and (self.slo_p99_ms is None or trial.p99_ms <= self.slo_p99_ms)

    def score(self, trial: Trial) -> tuple[int, float]:
        """Ordering for the search: trials meeting the objective by throughput, then the
        others by how close their p99 came to the SLO."""
        if self.meets(trial):
            return (2, trial.rows_per_s)
        if self.fits(trial) and self.slo_p99_ms is not None:
            return (1, -trial.p99_ms)
        return (0, trial.rows_per_s)


@dataclass(frozen=True, slots=True)
class Choice:
    trial: Trial
    met: bool
    rule: str


def choose(trials: Sequence[Trial], objective: Objective) -> Choice:
    measured = [t for t in trials if t.knobs is not None]
    if not measured:
        raise ValueError("no trial to choose from")
    fitting = [t for t in measured if objective.fits(t)] or measured
    slo = objective.slo_p99_ms
    if slo is not None:
        meeting = [t for t in fitting if objective.meets(t)]
        if meeting:
            best = max(meeting, key=lambda t: t.rows_per_s)
            return Choice(best, True, f"the highest throughput whose p99 is within {slo:g} ms")
        closest = min(fitting, key=lambda t: t.p99_ms)
        return Choice(
            closest,
            False,
            f"no configuration met p99 <= {slo:g} ms; the closest trial "
            f"(lowest p99, {closest.p99_ms:.2f} ms)",
        )
    return Choice(
        knee(fitting),
        True,
        "no SLO: the knee of throughput against p99 (on the Pareto front, the trial farthest "
        "from the line joining the lowest-p99 and the highest-throughput trials, both axes "
        "scaled to 0..1)",
    )


def pareto(trials: Sequence[Trial]) -> list[Trial]:
    """Trials no other beats on both throughput and p99, by rising p99."""
    front: list[Trial] = []
    for t in sorted(trials, key=lambda t: (t.p99_ms, -t.rows_per_s)):
        if not front or t.rows_per_s > front[-1].rows_per_s:
            front.append(t)
    return front


def knee(trials: Sequence[Trial]) -> Trial:
    front = pareto(trials)
    if len(front) <= 2:
        return front[-1]
    x0, x1 = front[0].p99_ms, front[-1].p99_ms
    y0, y1 = front[0].rows_per_s, front[-1].rows_per_s

    def gain(t: Trial) -> float:
        # Distance above the chord from (0, 0) to (1, 1) once both axes are scaled.
        x = (t.p99_ms - x0) / (x1 - x0) if x1 > x0 else 0.0
        y = (t.rows_per_s - y0) / (y1 - y0) if y1 > y0 else 0.0
        return y - x

    return max(front, key=gain)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The deployment's size, in the shape of Azure ML's profiling answer."""

    knobs: Knobs
    cpu_cores: int
    memory_mb: int
    throughput: float
    rows_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rule: str
    met: bool
    trial: int
    rows: int
    concurrency: int
    cores_rule: str
    memory_rule: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.knobs.to_dict(),
            "cpu_cores": self.cpu_cores,
            "memory_mb": self.memory_mb,
            "expected": {
                "requests_per_s": round(self.throughput, 1),
                "rows_per_s": round(self.rows_per_s, 1),
                "p50_ms": round(self.p50_ms, 3),
                "p95_ms": round(self.p95_ms, 3),
                "p99_ms": round(self.p99_ms, 3),
                "rows_per_request": self.rows,
                "concurrency": self.concurrency,
            },
            "rule": self.rule,
            "objective_met": self.met,
            "trial": self.trial,
            "cores_rule": self.cores_rule,
            "memory_rule": self.memory_rule,
        }

    def lines(self) -> list[str]:
        verdict = "" if self.met else "  (OBJECTIVE NOT MET)"
        return [
            f"rule: {self.rule}{verdict}",
            f"cpu cores: {self.cpu_cores}  ({self.cores_rule})",
            f"memory: {self.memory_mb} MB  ({self.memory_rule})",
            f"expected at {self.concurrency} requests in flight of {self.rows} row(s): "
            f"{self.throughput:,.0f} requests/s ({self.rows_per_s:,.0f} rows/s), "
            f"p50 {self.p50_ms:.2f} ms, p95 {self.p95_ms:.2f} ms, p99 {self.p99_ms:.2f} ms",
            f"configuration (trial {self.trial}): {self.knobs.label}",
        ]


def recommend(choice: Choice, cores: int) -> Recommendation:
    t = choice.trial
    assert t.knobs is not None
    busy = max(1, math.ceil(t.busy_cores - 0.05))
    cpu = min(cores, max(busy, 1))
    memory = math.ceil(t.peak_rss_mb * (1 + MEMORY_HEADROOM))
    return Recommendation(
        knobs=t.knobs,
        cpu_cores=cpu,
        memory_mb=memory,
        throughput=t.throughput,
        rows_per_s=t.rows_per_s,
        p50_ms=t.p50_ms,
        p95_ms=t.p95_ms,
        p99_ms=t.p99_ms,
        rule=choice.rule,
        met=choice.met,
        trial=t.index,
        rows=t.rows,
        concurrency=t.concurrency,
        cores_rule=(
            f"the server's processes kept {t.busy_cores:.2f} cores busy on average in the "
            f"measured windows, rounded up, at most the {cores} the trials ran on"
        ),
        memory_rule=(
            f"peak resident memory of the server's process tree {t.peak_rss_mb:.0f} MB "
            f"+ {MEMORY_HEADROOM:.0%} headroom"
        ),
    )
