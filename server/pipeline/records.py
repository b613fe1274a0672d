"""Run records and the cache index, in SQLite beside the pipeline (``.sluice/pipeline.db``).

``runs``: one row per run (id, pipeline, parameters, status); ``steps``: one row per step of a
run (status, cache hit or miss, duration, key, the key's parts, output digests, error);
``cache``: key → the output digests a successful run published; ``memo``: the hasher's stat
memo. WAL and a busy timeout let concurrent runs share the file.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_DIR = ".sluice"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memo (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER,
    digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, started REAL NOT NULL, finished REAL,
    status TEXT NOT NULL, params TEXT NOT NULL, host TEXT, pid INTEGER);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL, cache TEXT,
    started REAL, seconds REAL, key TEXT, parts TEXT, outputs TEXT, error TEXT,
    PRIMARY KEY (run_id, step));
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY, step TEXT NOT NULL, run_id TEXT NOT NULL, outputs TEXT NOT NULL,
    created REAL NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class StepRecord:
    run_id: str
    step: str
    status: str
    cache: str | None
    seconds: float | None
    key: str | None
    parts: dict[str, Any] | None
    outputs: dict[str, str] | None
    error: str | None


def connect(root: Path) -> sqlite3.Connection:
    """Open (creating) the state database of the pipeline directory ``root``."""
    folder = root / STATE_DIR
    folder.mkdir(exist_ok=True)
    db = sqlite3.connect(folder / "pipeline.db", timeout=60, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    return db


class Records:
    """Thread-safe writes of one run's rows, and the reads behind ``runs``/``show``/``explain``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._lock = threading.Lock()

    def start_run(self, run_id: str, pipeline: Path, params: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO runs (run_id, pipeline, started, status, params, host, pid) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                str(pipeline),
                time.time(),
                "running",
                json.dumps(params, sort_keys=True),
                socket.gethostname(),
                os.getpid(),
            ),
        )

    def finish_run(self, run_id: str, status: str) -> None:
        self._write(
            "UPDATE runs SET finished = ?, status = ? WHERE run_id = ?",
            (time.time(), status, run_id),
        )

    def step(
        self,
        run_id: str,
        step: str,
        status: str,
        *,
        cache: str | None = None,
        seconds: float | None = None,
        key: str | None = None,
        parts: dict[str, Any] | None = None,
        outputs: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO steps (run_id, step, status, cache, started, seconds, key, "
            "parts, outputs, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                step,
                status,
                cache,
                time.time(),
                seconds,
                key,
                None if parts is None else json.dumps(parts, sort_keys=True),
                None if outputs is None else json.dumps(outputs, sort_keys=True),
                error,
            ),
        )

    def cached(self, key: str) -> dict[str, str] | None:
        with self._lock:
            row = self.db.execute("SELECT outputs FROM cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def remember(self, key: str, step: str, run_id: str, outputs: dict[str, str]) -> None:
        self._write(
            "INSERT OR REPLACE INTO cache (key, step, run_id, outputs, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (key, step, run_id, json.dumps(outputs, sort_keys=True), time.time()),
        )

    def forget(self, key: str) -> None:
        self._write("DELETE FROM cache WHERE key = ?", (key,))

    def runs(self, pipeline: Path, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT r.run_id, r.started, r.finished, r.status, r.params, r.host, r.pid, "
            "SUM(s.cache = 'hit'), SUM(s.cache = 'miss'), SUM(s.status = 'failed') "
            "FROM runs r LEFT JOIN steps s USING (run_id) WHERE r.pipeline = ? "
            "GROUP BY r.run_id ORDER BY r.started DESC, r.rowid DESC LIMIT ?",
            (str(pipeline), limit),
        ).fetchall()
        return [
            {
                "run_id": r[0],
                "started": r[1],
                "seconds": None if r[2] is None else round(r[2] - r[1], 3),
                "status": _status(r[3], r[5], r[6]),
                "params": json.loads(r[4]),
                "hits": r[7] or 0,
                "misses": r[8] or 0,
                "failed": r[9] or 0,
            }
            for r in rows
        ]

    def run(self, run_id: str) -> tuple[dict[str, Any], list[StepRecord]] | None:
        row = self.db.execute(
            "SELECT run_id, pipeline, started, finished, status, params, host, pid FROM runs "
            "WHERE run_id = ? OR run_id LIKE ? ORDER BY started DESC",
            (run_id, f"{run_id}%"),
        ).fetchall()
        if len(row) != 1:
            return None
        r = row[0]
        head = {
            "run_id": r[0],
            "pipeline": r[1],
            "started": r[2],
            "seconds": None if r[3] is None else round(r[3] - r[2], 3),
            "status": _status(r[4], r[6], r[7]),
            "params": json.loads(r[5]),
        }
        steps = self.db.execute(
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY started", (r[0],)
        ).fetchall()
        return head, [_step_record(s) for s in steps]

    def step_history(self, pipeline: Path, step: str) -> list[StepRecord]:
        """Every keyed record of ``step`` in this pipeline's runs, newest first."""
        columns = ", ".join(f"s.{c}" for c in _STEP_COLUMNS.split(", "))
        rows = self.db.execute(
            f"SELECT {columns} FROM steps s JOIN runs r USING (run_id) "
            "WHERE r.pipeline = ? AND s.step = ? AND s.parts IS NOT NULL "
            "ORDER BY s.started DESC, s.rowid DESC",
            (str(pipeline), step),
        ).fetchall()
        return [_step_record(s) for s in rows]

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock, self.db:
            self.db.execute(sql, args)


def _status(status: str, host: str | None, pid: int | None) -> str:
    """A run still "running" whose process on this host is gone was killed."""
    if status != "running" or host != socket.gethostname() or pid is None:
        return status
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "killed"
    except PermissionError:  # alive, another user's
        return status
    return status


_STEP_COLUMNS = "run_id, step, status, cache, seconds, key, parts, outputs, error"


def _step_record(row: tuple[Any, ...]) -> StepRecord:
    return StepRecord(
        run_id=row[0],
        step=row[1],
        status=row[2],
        cache=row[3],
        seconds=row[4],
        key=row[5],
        parts=None if row[6] is None else json.loads(row[6]),
        outputs=None if row[7] is None else json.loads(row[7]),
        error=row[8],
    )
