"""Running totals of a job, filled in by either engine."""

from __future__ import annotations

from dataclasses import dataclass

from server.scoring.manifest import Finished


@dataclass(slots=True)
class Tally:
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
