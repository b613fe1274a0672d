"""Every Prometheus metric Sluice exports, built against an injected registry.

Durations are in microseconds, as Triton reports them. Children are bound once per model
version (``ModelMetrics``) so the hot path pays no label lookup.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

# 50 µs .. ~6.5 s, doubling: covers one-row CPU runs up to queued large batches.
DURATION_BUCKETS_US = tuple(50.0 * 2**i for i in range(18))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
DISAGREEMENT_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0, 10.0)
_LABELS = ("model", "version")


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """The metric children of one model version."""

    success: Counter
    failure: Counter
    request_us: Histogram
    queue_us: Histogram
    compute_us: Histogram
    batch_rows: Histogram
    queue_depth: Gauge
    loaded: Gauge
    load_seconds: Gauge


class Metrics:
    """Owns the metric families; ``model(name, version)`` binds a version's children."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._success = Counter(
            "sluice_inference_request_success",
            "Inference requests answered successfully",
            _LABELS,
            registry=registry,
        )
        self._failure = Counter(
            "sluice_inference_request_failure",
            "Inference requests that failed, by reason",
            (*_LABELS, "reason"),
            registry=registry,
        )
        self._request = Histogram(
            "sluice_request_duration_us",
            "End-to-end inference duration inside the engine (µs)",
            _LABELS,
            buckets=DURATION_BUCKETS_US,
            registry=registry,
        )
        self._queue = Histogram(
            "sluice_queue_duration_us",
            "Time a request waited in the batcher's queue (µs)",
            _LABELS,
            buckets=DURATION_BUCKETS_US,
            registry=registry,
        )
        self._compute = Histogram(
            "sluice_compute_duration_us",
            "ONNX Runtime time per batch (µs)",
            _LABELS,
            buckets=DURATION_BUCKETS_US,
            registry=registry,
        )
        self._batch = Histogram(
            "sluice_batch_size",
            "Rows per executed batch",
            _LABELS,
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self._depth = Gauge(
            "sluice_queue_depth", "Requests waiting in the batcher", _LABELS, registry=registry
        )
        self._loaded = Gauge(
            "sluice_model_loaded",
            "1 when the model version is loaded and ready",
            _LABELS,
            registry=registry,
        )
        self._load_seconds = Gauge(
            "sluice_model_load_seconds",
            "Seconds the last load (including warm-up) took",
            _LABELS,
            registry=registry,
        )

        self.rollout_weight = Gauge(
            "sluice_rollout_weight",
            "Percent of the requests without a version that each version gets (rollouts)",
            _LABELS,
            registry=registry,
        )
        self.mirror_requests = Counter(
            "sluice_mirror_requests",
            "Requests copied to a rollout's mirror version, by result (compared, dropped, failed)",
            (*_LABELS, "result"),
            registry=registry,
        )
        self.mirror_disagreement = Histogram(
            "sluice_mirror_disagreement",
            "Largest relative difference between a mirrored answer and the served one",
            _LABELS,
            buckets=DISAGREEMENT_BUCKETS,
            registry=registry,
        )
        self.monitoring = MonitoringMetrics(registry)

        # With --workers N each process has its own registry; this tells them apart.
        Gauge("sluice_worker_pid", "Process id of the worker that answered", registry=registry).set(
            os.getpid()
        )

    def model(self, name: str, version: str) -> ModelMetrics:
        return ModelMetrics(
            success=self._success.labels(name, version),
            failure=self._failure,
            request_us=self._request.labels(name, version),
            queue_us=self._queue.labels(name, version),
            compute_us=self._compute.labels(name, version),
            batch_rows=self._batch.labels(name, version),
            queue_depth=self._depth.labels(name, version),
            loaded=self._loaded.labels(name, version),
            load_seconds=self._load_seconds.labels(name, version),
        )

    def forget(self, name: str, version: str) -> None:
        """Drop a version's series after it is unloaded (its load state reads 0 first)."""
        families: tuple[MetricWrapperBase, ...] = (
            self._success,
            self._request,
            self._queue,
            self._compute,
            self._batch,
            self._depth,
        )
        for family in families:
            with contextlib.suppress(KeyError):
                family.remove(name, version)


@dataclass(frozen=True, slots=True)
class CaptureMetrics:
    """The capture children of one model version (``dropped`` is labelled by reason)."""

    rows: Counter
    dropped: Counter
    bytes: Counter
    queue_rows: Gauge


class MonitoringMetrics:
    """Capture and online drift: what was kept, what was dropped, and the drift figures."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._rows = Counter(
            "sluice_capture_rows",
            "Captured requests written to committed Parquet files",
            _LABELS,
            registry=registry,
        )
        self._dropped = Counter(
            "sluice_capture_dropped",
            "Sampled requests not captured, by reason (queue_full, write_error)",
            (*_LABELS, "reason"),
            registry=registry,
        )
        self._bytes = Counter(
            "sluice_capture_bytes",
            "Bytes of committed capture files",
            _LABELS,
            registry=registry,
        )
        self._queue = Gauge(
            "sluice_capture_queue_rows",
            "Sampled requests waiting for the capture and drift worker",
            _LABELS,
            registry=registry,
        )
        self.drift = Gauge(
            "sluice_drift",
            "Latest online drift statistic of a feature against its baseline",
            (*_LABELS, "feature", "statistic"),
            registry=registry,
        )
        self.window_rows = Gauge(
            "sluice_drift_window_rows",
            "Rows in the online drift window at the latest evaluation",
            _LABELS,
            registry=registry,
        )
        self.state = Gauge(
            "sluice_drift_state",
            "Alert state of a feature: 0 ok, 1 insufficient_data, 2 pending, 3 firing, 4 resolved",
            (*_LABELS, "feature"),
            registry=registry,
        )

    def capture(self, name: str, version: str) -> CaptureMetrics:
        return CaptureMetrics(
            rows=self._rows.labels(name, version),
            dropped=self._dropped,
            bytes=self._bytes.labels(name, version),
            queue_rows=self._queue.labels(name, version),
        )
