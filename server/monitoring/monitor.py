"""The server's monitor: the ``InferenceObserver`` the launcher gives the engine.

It keeps one ``ModelMonitor`` (a worker thread, see ``worker.py``) per attached model version
with capture or online drift enabled, routes each finished request to it, and on ``close``
drains every queue and commits every open file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from server.engine.observer import Observation, ObservedModel
from server.errors import ConfigError, InvalidInput
from server.metrics import MonitoringMetrics
from server.monitoring.alerts import AlertSink
from server.monitoring.worker import ModelMonitor
from server.settings import DriftConfig

if TYPE_CHECKING:  # imported when a model enables them: pyarrow and numba cost ~0.6 s at start
    from server.monitoring.capture import CaptureWriter
    from server.monitoring.online import OnlineDrift

log = logging.getLogger(__name__)


def build_online(model: ObservedModel, config: DriftConfig) -> tuple[OnlineDrift, str]:
    """The online drift of ``model`` and its baseline's sha256; ``ConfigError`` naming the
    model when the baseline is unreadable or its features match no input."""
    from server.monitoring.baseline import load_baseline
    from server.monitoring.features import feature_sources, row_width
    from server.monitoring.online import OnlineDrift
    from server.monitoring.profile import CategoricalProfile, NumericProfile

    where = f"model '{model.name}' [drift]"
    if not config.baseline:
        raise ConfigError(
            f"{where} needs a baseline: set drift.baseline, or register the version with "
            "`sluice models register ... --baseline DATA`"
        )
    try:
        with open(config.baseline, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        baseline = load_baseline(config.baseline)
    except OSError as exc:
        raise ConfigError(f"{where} baseline '{config.baseline}': {exc.strerror}") from exc
    except InvalidInput as exc:
        raise ConfigError(f"{where} baseline: {exc.message}") from exc
    numeric = {n: p for n, p in baseline.profiles.items() if isinstance(p, NumericProfile)}
    skipped = dict(baseline.skipped)
    # A categorical feature is read from the input of one value per row named like it.
    categorical: dict[str, CategoricalProfile] = {}
    for name, profile in baseline.profiles.items():
        if not isinstance(profile, CategoricalProfile):
            continue
        spec = model.inputs.get(name)
        if spec is not None and row_width(spec.shape, model.batching) == 1:
            categorical[name] = profile
        else:
            skipped[name] = (
                "a categorical feature is watched online from an input of one value per row "
                "named like it; the model has none"
            )
    if not numeric and not categorical:
        raise ConfigError(f"{where} baseline '{config.baseline}' has no feature the model takes")
    widths = {
        name: row_width(spec.shape, model.batching)
        for name, spec in model.inputs.items()
        if spec.datatype != "BYTES" and name not in categorical
    }
    sources = feature_sources(widths, list(numeric), where) if numeric else ()
    return OnlineDrift(sources, numeric, config, skipped, categorical), digest


class Monitor:
    """The ``InferenceObserver`` the launcher gives the engine; one ``ModelMonitor`` per
    attached model version with capture or drift enabled."""

    def __init__(self, metrics: MonitoringMetrics, sink: AlertSink, hash_key: str = "") -> None:
        self.metrics = metrics
        self.sink = sink
        self.hash_key = hash_key
        self._models: dict[tuple[str, str], ModelMonitor] = {}
        self._attached: dict[tuple[str, str], int] = {}
        self._closing: list[threading.Thread] = []
        self._mutex = threading.Lock()

    def attach(self, model: ObservedModel) -> None:
        config = model.config
        capture: CaptureWriter | None = None
        online: OnlineDrift | None = None
        digest = ""
        if config.capture.enabled:
            from server.monitoring.capture import CaptureWriter

            metrics = self.metrics.capture(model.name, model.version)
            try:
                capture = CaptureWriter(model, config.capture, metrics, self.hash_key)
            except ConfigError as exc:
                if config.capture.required:
                    raise
                log.warning("%s; serving without capture (required = false)", exc.message)
        if config.drift.enabled:
            try:
                online, digest = build_online(model, config.drift)
            except ConfigError as exc:
                if config.drift.required:
                    raise
                log.warning("%s; serving without online drift (required = false)", exc.message)
        key = (model.name, model.version)
        with self._mutex:
            self._attached[key] = self._attached.get(key, 0) + 1
            old = self._models.pop(key, None)
            if capture is not None or online is not None:
                monitor = ModelMonitor(model, capture, online, digest, self.metrics, self.sink)
                monitor.start()
                self._models[key] = monitor
        if old is not None:
            self._close_later(old)

    def detach(self, name: str, version: str) -> None:
        key = (name, version)
        with self._mutex:
            count = self._attached.get(key, 0) - 1
            if count > 0:
                self._attached[key] = count
                return
            self._attached.pop(key, None)
            old = self._models.pop(key, None)
        if old is not None:
            self._close_later(old)

    def observe(self, observation: Observation) -> None:
        monitor = self._models.get((observation.model, observation.version))
        if monitor is not None:
            monitor.offer(observation)

    def get(self, name: str, version: str = "") -> ModelMonitor | None:
        """The monitor of ``name`` (its given version, or any attached one)."""
        for (model, found), monitor in list(self._models.items()):
            if model == name and (not version or version == found):
                return monitor
        return None

    def report(self, name: str, version: str = "") -> dict[str, Any] | None:
        """The latest drift evaluation of a model, as JSON (None before the first)."""
        monitor = self.get(name, version)
        return None if monitor is None else monitor.latest_json

    def close(self) -> None:
        """Flush and stop every model's worker (blocks; call off the loop)."""
        with self._mutex:
            monitors = list(self._models.values())
            self._models.clear()
            self._attached.clear()
        for monitor in monitors:
            monitor.close()
        for thread in self._closing:
            thread.join()

    def _close_later(self, monitor: ModelMonitor) -> None:
        thread = threading.Thread(target=monitor.close, name="sluice-monitor-close", daemon=True)
        thread.start()
        self._closing.append(thread)
