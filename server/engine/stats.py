"""Per-version inference statistics in the shape Triton's statistics extension reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict


class Duration(TypedDict):
    count: int
    ns: int


class BatchStats(TypedDict):
    batch_size: int
    compute_infer: Duration


class InferenceStats(TypedDict):
    success: Duration
    fail: Duration
    queue: Duration
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration


class ModelStatistics(TypedDict):
    name: str
    version: str
    last_inference: int
    inference_count: int
    execution_count: int
    inference_stats: InferenceStats
    batch_stats: list[BatchStats]


@dataclass(slots=True)
class _Acc:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def view(self) -> Duration:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class Stats:
    """Counters updated on the event loop thread only (no locks needed)."""

    last_inference_ms: int = 0
    inference_count: int = 0  # rows
    execution_count: int = 0  # batches
    success: _Acc = field(default_factory=_Acc)
    fail: _Acc = field(default_factory=_Acc)
    queue: _Acc = field(default_factory=_Acc)
    compute_input: _Acc = field(default_factory=_Acc)
    compute_infer: _Acc = field(default_factory=_Acc)
    compute_output: _Acc = field(default_factory=_Acc)
    batches: dict[int, _Acc] = field(default_factory=dict)

    def record_batch(self, rows: int, requests: int, infer_ns: int, io_ns: int) -> None:
        self.execution_count += 1
        self.inference_count += rows
        self.compute_infer.add(infer_ns, requests)
        self.compute_input.add(io_ns, requests)
        self.compute_output.add(0, requests)
        self.batches.setdefault(rows, _Acc()).add(infer_ns)

    def view(self, name: str, version: str) -> ModelStatistics:
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.view(),
                "fail": self.fail.view(),
                "queue": self.queue.view(),
                "compute_input": self.compute_input.view(),
                "compute_infer": self.compute_infer.view(),
                "compute_output": self.compute_output.view(),
            },
            "batch_stats": [
                {"batch_size": size, "compute_infer": acc.view()}
                for size, acc in sorted(self.batches.items())
            ],
        }
