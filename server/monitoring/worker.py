"""One model version's monitoring worker: a thread that captures, windows and evaluates.

On the event loop, ``offer`` only decides (a hash of the request id against the sampling rate)
and appends the request to the columns being gathered; past ``queue_rows`` the row is dropped
and counted, never the request blocked. The thread wakes every ``GATHER_S``, takes what
gathered in one swap, writes it to the capture file, feeds the drift windows, evaluates on its
timer and publishes gauges, alert states and their events.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from server.engine.observer import Observation, ObservedModel
from server.metrics import MonitoringMetrics
from server.monitoring.alerts import STATE_VALUES, AlertSink, FeatureAlert
from server.monitoring.gathered import Gathered, TensorKey
from server.monitoring.sampling import sample_point
from server.tensors import TensorSpec

if TYPE_CHECKING:  # imported when a model enables them: pyarrow and numba cost ~0.6 s at start
    from server.monitoring.capture import CaptureWriter
    from server.monitoring.online import Evaluation, OnlineDrift

log = logging.getLogger(__name__)
# One wake-up per 0.1 s: the worker takes the GIL from the event loop ten times a second, and
# the fixed cost of a batch (a dozen Arrow calls) is spread over 0.1 s of requests.
GATHER_S = 0.1


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
        self.queue_rows = config.capture.queue_rows
        self._specs = _kept_tensors(model, capture, online)
        self._gathered = Gathered(self._specs)
        self._mutex = threading.Lock()  # the loop appends, the worker swaps
        self._enqueued = 0
        self._done = 0
        self._closing = False
        self._stop = threading.Event()
        self._ids = itertools.count()
        self._id_prefix = f"{uuid.uuid4().hex[:16]}-"
        self.capture_metrics = metrics.capture(model.name, model.version)
        self.capture_metrics.queue_rows.set_function(lambda: len(self._gathered))
        self._dropped = self.capture_metrics.dropped.labels(model.name, model.version, "queue_full")
        drift = config.drift
        self.alerts = {
            s.feature: FeatureAlert(drift.alert_after, drift.alert_window, drift.resolve_after)
            for s in (online.all_sources if online is not None else ())
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
        with self._mutex:
            gathered = self._gathered
            if len(gathered) >= self.queue_rows or self._closing:
                self._dropped.inc()
                return
            gathered.append(observation, request_id, point)
            self._enqueued += 1

    def close(self) -> None:
        """Write what gathered, commit the open file and stop the thread (blocks). A request
        offered after this began is dropped and counted."""
        with self._mutex:
            self._closing = True
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        else:
            self._step(stopping=True)
            if self.capture is not None:
                self.capture.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            stopping = self._stop.wait(self._wait_s())
            self._step(stopping)
        if self.capture is not None:
            self.capture.close()

    def _step(self, stopping: bool) -> None:
        gathered = None
        if len(self._gathered):  # an idle wake-up swaps nothing
            with self._mutex:
                gathered, self._gathered = self._gathered, Gathered(self._specs)
        try:
            if gathered is not None:
                self._process(gathered)
            self._tick(stopping)
        except Exception:  # a bug here must not silently stop monitoring: log, go on
            log.exception("monitor of model '%s' failed a batch", self.model.name)
        self._done += len(gathered) if gathered is not None else 0

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Block until every request enqueued so far has been written and windowed."""
        target = self._enqueued
        deadline = time.monotonic() + timeout_s
        while self._done < target and time.monotonic() < deadline:
            time.sleep(0.005)

    def _wait_s(self) -> float:
        if self.online is None:
            return GATHER_S
        return min(GATHER_S, max(0.0, self._next_evaluation - time.monotonic()))

    def _process(self, gathered: Gathered) -> None:
        if not len(gathered):
            return
        points = np.fromiter(gathered.points, np.float64, len(gathered))
        ok = None
        if gathered.failed():
            ok = np.fromiter((e is None for e in gathered.errors), np.bool_, len(gathered))
        if self.capture is not None:
            keep = points < self.capture_rate
            if ok is not None and not self.capture_errors:
                keep &= ok
            self.capture.add(gathered if keep.all() else gathered.select(np.flatnonzero(keep)))
        if self.online is not None:
            fed = points < self.drift_rate
            if ok is not None:
                fed &= ok
            chosen = gathered if fed.all() else gathered.select(np.flatnonzero(fed))
            if not len(chosen):
                return
            tensors = {
                name: [a for a in column if a is not None]
                for (role, name), column in chosen.tensors.items()
                if role == "input"
            }
            self.online.add(tensors, chosen.times[-1] / 1e9)

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


def _kept_tensors(
    model: ObservedModel, capture: CaptureWriter | None, online: OnlineDrift | None
) -> dict[TensorKey, TensorSpec]:
    """The tensors the worker needs: what capture writes and the inputs drift watches."""
    kept: dict[TensorKey, TensorSpec] = {}
    if capture is not None:
        kept.update(((t.role, t.name), t.spec) for t in capture.tensors)
    if online is not None:
        watched = {s.tensor for s in online.all_sources}
        kept.update(
            (("input", name), spec) for name, spec in model.inputs.items() if name in watched
        )
    return kept


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
