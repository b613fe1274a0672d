"""Per-feature alert states with k-of-m hysteresis, and the sink that hears about changes.

``ok → pending`` on a breach; ``→ firing`` once ``alert_after`` of the last ``alert_window``
evaluations breached; ``firing → resolved`` after ``resolve_after`` clean evaluations in a row;
``resolved → ok`` on the next clean one. Too little data is ``insufficient_data``, never an
alarm; it does not resolve a firing alert either (no data is not evidence of recovery).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

AlertState = Literal["ok", "insufficient_data", "pending", "firing", "resolved"]
STATE_VALUES: dict[AlertState, int] = {
    "ok": 0,
    "insufficient_data": 1,
    "pending": 2,
    "firing": 3,
    "resolved": 4,
}
DETECTED = "io.sluice.drift.detected"
RESOLVED = "io.sluice.drift.resolved"

log = logging.getLogger(__name__)


class AlertSink(Protocol):
    """Where alert state changes go (the registry's event outbox, or the log)."""

    def emit(self, type: str, subject: str, data: dict[str, Any]) -> None: ...


class LoggingAlertSink:
    """The default sink: one warning line per state change."""

    def emit(self, type: str, subject: str, data: dict[str, Any]) -> None:
        log.warning(
            "%s %s: feature %s %s=%.4g (threshold %.4g), state %s",
            type,
            subject,
            data.get("feature"),
            data.get("statistic"),
            data.get("value") if data.get("value") is not None else float("nan"),
            data.get("threshold") if data.get("threshold") is not None else float("nan"),
            data.get("state"),
        )


@dataclass(slots=True)
class FeatureAlert:
    """The alert state of one feature; ``update`` takes one evaluation's verdict (None: not
    enough data) and returns the event type when the feature started firing or resolved."""

    alert_after: int
    alert_window: int
    resolve_after: int
    state: AlertState = "insufficient_data"
    _history: deque[bool] = field(default_factory=deque)
    _clean: int = 0

    def update(self, breach: bool | None) -> str | None:
        if breach is None:
            if self.state != "firing":
                self.state = "insufficient_data"
                self._history.clear()
            return None
        self._history.append(breach)
        while len(self._history) > self.alert_window:
            self._history.popleft()
        if self.state == "firing":
            self._clean = 0 if breach else self._clean + 1
            if self._clean >= self.resolve_after:
                self.state = "resolved"
                self._history.clear()
                self._clean = 0
                return RESOLVED
            return None
        if sum(self._history) >= self.alert_after:
            self.state = "firing"
            self._clean = 0
            return DETECTED
        self.state = "pending" if any(self._history) else "ok"
        return None
