"""The progress bar (rows, rows/s, ETA), the job's running totals and its JSON summary.

The bar is drawn on a terminal only; piped or redirected, a job prints nothing but the summary.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO, TypedDict

from server.scoring.manifest import Finished

REFRESH_S = 0.2


class Summary(TypedDict):
    """The JSON object ``sluice score`` prints when it finishes."""

    output: str
    model: str
    model_version: str
    model_sha256: str
    engine: str
    files: int
    files_scored: int
    files_resumed: int
    rows_read: int
    rows_scored: int
    rows_skipped: int
    seconds: float
    rows_per_second: float
    copied_bytes: int


@dataclass(slots=True)
class Tally:
    """Running totals of a job, filled in by either engine."""

    files: int = 0
    rows_read: int = 0
    rows_scored: int = 0
    rows_skipped: int = 0
    copied_bytes: int = 0

    def add(self, entry: Finished) -> None:
        self.files += 1
        self.rows_read += entry["rows_read"]
        self.rows_scored += entry["rows_scored"]
        self.rows_skipped += entry["rows_skipped"]


class Progress:
    """Counts rows as they are written and redraws a one-line bar at most every 0.2 s."""

    def __init__(self, total_rows: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total = total_rows
        self.rows = 0
        self.skipped = 0
        self._start = time.monotonic()
        self._drawn = 0.0

    def advance(self, rows: int, skipped: int = 0) -> None:
        self.rows += rows
        self.skipped += skipped
        now = time.monotonic()
        if self.enabled and now - self._drawn >= REFRESH_S:
            self._drawn = now
            self.stream.write("\r" + self.line(now - self._start))
            self.stream.flush()

    def line(self, elapsed: float) -> str:
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        left = max(self.total - self.rows, 0)
        eta = _clock(left / rate) if rate > 0 else "--:--"
        percent = 100.0 * self.rows / self.total if self.total else 100.0
        skipped = f"  {self.skipped:,} skipped" if self.skipped else ""
        return (
            f"scored {self.rows:,}/{self.total:,} rows ({percent:5.1f}%)  "
            f"{rate:,.0f} rows/s  ETA {eta}{skipped}  "
        )

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line(time.monotonic() - self._start) + "\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
