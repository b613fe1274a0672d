"""What the controller compares: per-version request counts, failures and the latency
histogram, read from this process's Prometheus registry, and differences between two reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

# A client that went away says nothing about the version that would have answered.
_NOT_THE_MODELS = frozenset({"Cancelled"})


@dataclass(slots=True)
class Counts:
    """One version's totals since the process started (monotonic counters)."""

    success: float = 0.0
    failure: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le → cumulative count

    def minus(self, earlier: Counts) -> Counts:
        return Counts(
            self.success - earlier.success,
            self.failure - earlier.failure,
            {le: n - earlier.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )

    def plus(self, other: Counts) -> Counts:
        edges = self.buckets.keys() | other.buckets.keys()
        return Counts(
            self.success + other.success,
            self.failure + other.failure,
            {le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0) for le in edges},
        )

    def below(self, other: Counts) -> bool:
        """Whether any counter is lower than ``other``'s (the process restarted since)."""
        return (
            self.success < other.success
            or self.failure < other.failure
            or any(n < other.buckets.get(le, 0.0) for le, n in self.buckets.items())
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "failure": self.failure,
            "buckets": [[str(le), n] for le, n in sorted(self.buckets.items())],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        buckets = {float(le): float(n) for le, n in data.get("buckets", [])}
        return cls(float(data.get("success", 0.0)), float(data.get("failure", 0.0)), buckets)

    @property
    def requests(self) -> int:
        return int(self.success + self.failure)

    @property
    def error_rate(self) -> float:
        return self.failure / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the latency (µs), interpolated within a bucket as
        Prometheus' ``histogram_quantile`` does; NaN without observations."""
        edges = sorted(self.buckets)
        total = self.buckets.get(math.inf, 0.0)
        if not edges or total <= 0:
            return math.nan
        rank = q * total
        lower, below = 0.0, 0.0
        for le in edges:
            count = self.buckets[le]
            if count >= rank:
                if math.isinf(le):
                    return lower
                inside = count - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = le, count
        return lower


Snapshot = dict[tuple[str, str], Counts]


def read(registry: CollectorRegistry, model: str) -> Snapshot:
    """Every version of ``model``'s counts now."""
    found: Snapshot = {}
    for family in registry.collect():
        if family.name not in (
            "sluice_inference_request_success",
            "sluice_inference_request_failure",
            "sluice_request_duration_us",
        ):
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model:
                continue
            counts = found.setdefault((model, labels["version"]), Counts())
            if sample.name == "sluice_inference_request_success_total":
                counts.success += sample.value
            elif sample.name == "sluice_inference_request_failure_total":
                if labels.get("reason") not in _NOT_THE_MODELS:
                    counts.failure += sample.value
            elif sample.name == "sluice_request_duration_us_bucket":
                counts.buckets[float(labels["le"])] = sample.value
    return found
