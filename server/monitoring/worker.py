"""One model version's monitoring worker: a thread that captures, windows and evaluates.

On the event loop, ``offer`` only decides (a hash of the request id against the sampling rate)
and enqueues; a full queue drops the row and counts it, never blocks the request. The thread
wakes at most every ``BATCH_DELAY_S``, writes what gathered to the capture file, feeds the
drift windows, evaluates on its timer and publishes gauges, alert states and their events.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from server.engine.observer import Observation, ObservedModel
from server.metrics import MonitoringMetrics
from server.monitoring.alerts import STATE_VALUES, AlertSink, FeatureAlert
from server.monitoring.sampling import Sampled, sample_point

if TYPE_CHECKING:  # imported when a model enables them: pyarrow and numba cost ~0.6 s at start
    from server.monitoring.capture import CaptureWriter
    from server.monitoring.online import Evaluation, OnlineDrift

log = logging.getLogger(__name__)
BATCH_ROWS = 16_384
BATCH_DELAY_S = 0.05
_IDLE_WAKE_S = 1.0


class ModelMonitor:
    """Capture and online drift of one model version, on one worker thread."""

    def __init__(
        self,
        model: ObservedModel,
        capture: CaptureWriter | None,
        online: OnlineDrift | None,
        baseline_sha256: str,
        metrics: MonitoringMetrics,
        sink: AlertSink,
    ) -> None:
        self.model = model
        self.capture = capture
        self.online = online
        self.baseline_sha256 = baseline_sha256
        self.metrics = metrics
        self.sink = sink
        config = model.config
        self.capture_rate = config.capture.sample_rate if capture is not None else 0.0
        self.capture_errors = capture is not None and config.capture.capture_errors
        self.drift_rate = config.drift.sample_rate if online is not None else 0.0
        self.rate = max(self.capture_rate, self.drift_rate)
        # SimpleQueue (C, lock-free put) halves the cost of ``offer`` against queue.Queue;
        # its bound is checked here, by the one thread that puts.
        self.queue: queue.SimpleQueue[Sampled | None] = queue.SimpleQueue()
        self.queue_rows = config.capture.queue_rows
        self._enqueued = 0
        self._done = 0
        self._closing = False
        self._ids = itertools.count()
        self._id_prefix = f"{uuid.uuid4().hex[:16]}-"
        self.capture_metrics = metrics.capture(model.name, model.version)
        self.capture_metrics.queue_rows.set_function(self.queue.qsize)
        self._dropped = self.capture_metrics.dropped.labels(model.name, model.version, "queue_full")
        drift = config.drift
        self.alerts = {
            s.feature: FeatureAlert(drift.alert_after, drift.alert_window, drift.resolve_after)
            for s in (online.sources if online is not None else ())
        }
        self.latest: Evaluation | None = None
        self.latest_json: dict[str, Any] | None = None
        self._next_evaluation = time.monotonic() + drift.evaluate_every_s
        self._lock = threading.Lock()  # one evaluation at a time (timer or evaluate_now)
        self._thread = threading.Thread(
            target=self._run, name=f"sluice-monitor-{model.name}:{model.version}", daemon=True
        )

    @property
    def subject(self) -> str:
        return f"models/{self.model.name}:{self.model.version}"

    def start(self) -> None:
        self._thread.start()

    def offer(self, observation: Observation) -> None:
        """On the loop: sample by request id and enqueue, or count the drop."""
        if observation.error is not None and not self.capture_errors:
            return
        # Without a client id: a process-unique one (uuid4 per request cost 2 us on the loop).
        request_id = observation.request.id or f"{self._id_prefix}{next(self._ids)}"
        point = sample_point(request_id)
        if point >= self.rate:
            return
        if self.queue.qsize() >= self.queue_rows or self._closing:
            self._dropped.inc()
            return
        self._enqueued += 1
        self.queue.put(Sampled(observation, request_id, point))

    def close(self) -> None:
        """Drain the queue, commit the open file and stop the thread (blocks). A request
        offered after this began is dropped and counted, not left in the queue."""
        self._closing = True
        if self._thread.is_alive():
            self.queue.put(None)
            self._thread.join()
        elif self.capture is not None:
            self.capture.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[Sampled] = []
            try:
                first = self.queue.get(timeout=self._wait_s())
                if first is not None:
                    # Let requests gather: one wake-up per BATCH_DELAY_S, not per request, so
                    # the worker takes the GIL from the event loop a few times a second.
                    time.sleep(BATCH_DELAY_S)
                while True:
                    if first is None:
                        stopping = True
                        break
                    batch.append(first)
                    if len(batch) >= BATCH_ROWS:
                        break
                    first = self.queue.get_nowait()
            except queue.Empty:
                pass
            try:
                self._process(batch)
                self._tick(stopping)
            except Exception:  # a bug here must not silently stop monitoring: log, go on
                log.exception("monitor of model '%s' failed a batch", self.model.name)
            self._done += len(batch)
        if self.capture is not None:
            self.capture.close()

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Block until every request enqueued so far has been written and windowed."""
        target = self._enqueued
        deadline = time.monotonic() + timeout_s
        while self._done < target and time.monotonic() < deadline:
            time.sleep(0.005)

    def _wait_s(self) -> float:
        if self.online is None:
            return _IDLE_WAKE_S
        return min(_IDLE_WAKE_S, max(0.0, self._next_evaluation - time.monotonic()))

    def _process(self, batch: Sequence[Sampled]) -> None:
        if self.capture is not None:
            kept = [
                s
                for s in batch
                if s.point < self.capture_rate
                and (s.observation.error is None or self.capture_errors)
            ]
            if kept:
                self.capture.add(kept)
        if self.online is not None:
            fed = [s for s in batch if s.point < self.drift_rate and s.observation.error is None]
            tensors: dict[str, list[np.ndarray]] = {}
            for sampled in fed:
                for tensor in sampled.observation.request.inputs:
                    tensors.setdefault(tensor.name, []).append(tensor.data)
            if fed:
                self.online.add(tensors, fed[-1].observation.time_ns / 1e9)

    def _tick(self, stopping: bool) -> None:
        if self.capture is not None and not stopping:
            self.capture.tick()
        if self.online is not None and time.monotonic() >= self._next_evaluation:
            self._next_evaluation = time.monotonic() + self.online.config.evaluate_every_s
            self.evaluate_now()

    def evaluate_now(self, now: float | None = None) -> Evaluation | None:
        """Evaluate the window ending at ``now`` (default: the wall clock); update gauges and
        alert states and emit their changes. Safe from any thread."""
        online = self.online
        if online is None:
            return None
        now = time.time() if now is None else now
        with self._lock:
            evaluation = online.evaluate(now)
            self._publish(evaluation, now)
        return evaluation

    def _publish(self, evaluation: Evaluation, now: float) -> None:
        from server.monitoring.report import report_json

        assert self.online is not None
        name, version = self.model.name, self.model.version
        metrics = self.metrics
        for feature, result in evaluation.report.features.items():
            for statistic, value in result.statistics.items():
                metrics.drift.labels(name, version, feature, statistic).set(value)
        metrics.window_rows.labels(name, version).set(evaluation.window_rows)
        start, end = self._window_bounds(now)
        for feature, verdict in evaluation.verdicts.items():
            alert = self.alerts[feature]
            change = alert.update(verdict.breach)
            metrics.state.labels(name, version, feature).set(STATE_VALUES[alert.state])
            if change is None:
                continue
            result = evaluation.report.features[feature]
            data: dict[str, Any] = {
                "model": name,
                "version": version,
                "baseline": self.model.config.drift.baseline,
                "baseline_sha256": self.baseline_sha256,
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
                "n_ref": result.reference_rows,
                "n_cur": result.current_rows,
                "feature": feature,
                "statistic": verdict.statistic,
                "value": _finite(verdict.value),
                "threshold": verdict.threshold,
                "state": alert.state,
                "capture_partitions": self._partitions(start, end),
            }
            self.sink.emit(change, self.subject, data)
        body = dict(report_json(evaluation.report))
        body.update(
            model=name,
            version=version,
            window_start=start.isoformat(),
            window_end=end.isoformat(),
            window_rows=evaluation.window_rows,
            states={f: a.state for f, a in self.alerts.items()},
            psi_warnings=[
                f
                for f, r in evaluation.report.features.items()
                if r.statistics.get("psi", 0.0) >= self.model.config.drift.psi_warn
            ],
        )
        self.latest = evaluation
        self.latest_json = body

    def _window_bounds(self, now: float) -> tuple[dt.datetime, dt.datetime]:
        assert self.online is not None
        seconds = self.online.slice_seconds
        slices = math.ceil(self.online.config.window_seconds / seconds)
        first = (self.online.slice_number(now) - slices + 1) * seconds
        return (
            dt.datetime.fromtimestamp(first, tz=dt.UTC),
            dt.datetime.fromtimestamp(now, tz=dt.UTC),
        )

    def _partitions(self, start: dt.datetime, end: dt.datetime) -> list[str]:
        """The capture partitions (one per hour) that hold the window's rows."""
        if self.capture is None:
            return []
        hour = start.replace(minute=0, second=0, microsecond=0)
        found = []
        while hour <= end:
            found.append(f"{self.capture.directory}/date={hour:%Y-%m-%d}/hour={hour:%H}")
            hour += dt.timedelta(hours=1)
        return found


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
