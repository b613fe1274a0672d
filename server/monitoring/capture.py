"""Captured requests as Parquet files, committed atomically.

A file lives at ``PATH/model=M/version=V/date=YYYY-MM-DD/hour=HH/part-*.parquet``. It is
written under a hidden temporary name (``pyarrow.dataset`` skips names starting with ``.``)
and renamed into place when it reaches ``max_file_mb`` or ``max_file_seconds``, when the hour
changes, and on close: a reader never sees a partial file, and a killed server loses at most
the open file's rows. The row layout is ``capture_schema``'s. Each writer is used by one thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from server.engine.observer import ObservedModel
from server.errors import ConfigError
from server.metrics import CaptureMetrics
from server.monitoring.capture_schema import (
    capture_schema,
    captured_tensors,
    keyed_hasher,
    tensor_column,
)
from server.monitoring.gathered import Gathered
from server.settings import CaptureConfig

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 4096
_HOUR_NS = 3600 * 10**9
_TIME = pa.timestamp("us", tz="UTC")


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root of a capture path: a local directory or a pyarrow URI."""
    if "://" in path:
        fs, root = pafs.FileSystem.from_uri(path)
        return fs, root.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(path)


def check_writable(fs: pafs.FileSystem, root: str) -> None:
    """Create ``root`` and write and delete a probe file there; ``OSError`` when it fails."""
    fs.create_dir(root, recursive=True)
    probe = f"{root}/.sluice-probe-{uuid.uuid4().hex}"
    with fs.open_output_stream(probe) as stream:
        stream.write(b"ok")
    fs.delete_file(probe)


class CaptureWriter:
    """Turns sampled requests into Parquet rows and commits files by size, age and hour."""

    def __init__(
        self,
        model: ObservedModel,
        config: CaptureConfig,
        metrics: CaptureMetrics,
        hash_key: str = "",
    ) -> None:
        where = f"model '{model.name}' [capture]"
        if config.hash_columns and not hash_key:
            raise ConfigError(
                f"{where} hash_columns needs a key: set SLUICE_CAPTURE_HASH_KEY "
                "(server setting capture_hash_key)"
            )
        self.model = model
        self.config = config
        self.metrics = metrics
        self.tensors = captured_tensors(model, config)
        self.schema = capture_schema(self.tensors)
        self._digest = keyed_hasher(hash_key.encode())
        self._fs, root = filesystem(config.path)
        self.directory = f"{root}/model={model.name}/version={model.version}"
        try:
            check_writable(self._fs, self.directory)
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(f"{where} path '{config.path}' is not writable: {exc}") from exc
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._stream: pa.NativeFile | None = None
        self._temporary = ""
        self._final = ""
        self._hour = ""
        self._hour_number = -1
        self._opened = 0.0
        self._rows_in_file = 0
        self._sequence = 0
        self.committed: list[str] = []

    def add(self, gathered: Gathered) -> None:
        """Turn requests into Arrow rows now (a few Arrow arrays live on, not thousands of
        Python objects for the garbage collector to walk); write a row group per
        ``ROW_GROUP_ROWS``; a new hour commits the open file first."""
        if not len(gathered):
            return
        hours = np.fromiter(gathered.times, np.int64, len(gathered)) // _HOUR_NS
        if hours.min() == hours.max() == self._hour_number:
            self._take(gathered)
            return
        for hour in np.unique(hours):  # in time order; rows keep their order within an hour
            if hour != self._hour_number:
                if self._rows_in_file + self._pending_rows:
                    self.commit()
                self._hour_number = int(hour)
                self._hour = _hour_of(int(hour) * _HOUR_NS)
            self._take(gathered.select(np.flatnonzero(hours == hour)))

    def _take(self, gathered: Gathered) -> None:
        if self._rows_in_file + self._pending_rows == 0:
            self._opened = time.monotonic()
        try:
            batch = self._batch(gathered)
        except (pa.ArrowException, ValueError, TypeError) as exc:  # values Arrow refused
            log.error(
                "capture of model '%s': %d rows lost: %s", self.model.name, len(gathered), exc
            )
            self.metrics.dropped.labels(self.model.name, self.model.version, "write_error").inc(
                len(gathered)
            )
            return
        self._pending.append(batch)
        self._pending_rows += len(gathered)
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._write_pending()

    def tick(self) -> None:
        """Commit the open file when it is older than ``max_file_seconds``."""
        if self._rows_in_file + self._pending_rows == 0:
            return
        if time.monotonic() - self._opened >= self.config.max_file_seconds:
            self.commit()

    def commit(self) -> None:
        """Write what is pending and rename the open file into place."""
        if self._pending:
            self._write_pending()
        if self._writer is None:
            return
        rows = self._rows_in_file
        try:
            self._writer.close()
            assert self._stream is not None
            size = self._stream.tell()
            self._stream.close()
            self._fs.move(self._temporary, self._final)
        except (OSError, pa.ArrowException) as exc:
            self._fail(exc, rows)
            return
        finally:
            self._writer = None
            self._stream = None
            self._rows_in_file = 0
        self.metrics.rows.inc(rows)
        self.metrics.bytes.inc(size)
        self.committed.append(self._final)

    close = commit

    def _write_pending(self) -> None:
        pending, rows = self._pending, self._pending_rows
        self._pending, self._pending_rows = [], 0
        try:
            table = pa.Table.from_batches(pending, self.schema)
            if self._writer is None:
                self._open()
            assert self._writer is not None and self._stream is not None
            self._writer.write_table(table, row_group_size=rows)
        except (OSError, pa.ArrowException) as exc:
            self._fail(exc, self._rows_in_file + rows)
            return
        self._rows_in_file += rows
        if self._stream.tell() >= self.config.max_file_mb * 1024 * 1024:
            self.commit()

    def _open(self) -> None:
        directory = f"{self.directory}/date={self._hour[:10]}/hour={self._hour[11:]}"
        self._fs.create_dir(directory, recursive=True)
        self._sequence += 1
        stem = f"part-{time.time_ns()}-{os.getpid()}-{self._sequence}-{uuid.uuid4().hex[:8]}"
        self._temporary = f"{directory}/.{stem}.parquet.tmp"
        self._final = f"{directory}/{stem}.parquet"
        self._stream = self._fs.open_output_stream(self._temporary)
        # Dictionaries and statistics only where they pay: tensor values are high-cardinality
        # floats, and encoding them as dictionaries took ~20% of the worker's time. Levels
        # encoded 64k values at a time rather than 1k: 15% less time per batch of tensors.
        self._writer = pq.ParquetWriter(
            self._stream,
            self.schema,
            compression=self.config.compression,
            use_dictionary=["status", "error"],
            write_statistics=["time", "status"],
            write_batch_size=65_536,
        )

    def _fail(self, exc: BaseException, rows: int) -> None:
        log.error(
            "capture of model '%s' version %s: %d rows lost: %s",
            self.model.name,
            self.model.version,
            rows,
            exc,
        )
        self.metrics.dropped.labels(self.model.name, self.model.version, "write_error").inc(rows)
        self._writer = None
        self._stream = None
        self._rows_in_file = 0

    def _batch(self, gathered: Gathered) -> pa.RecordBatch:
        rows = len(gathered)
        failed = gathered.failed()
        if failed:
            statuses = pa.array(
                ["ok" if e is None else type(e).__name__ for e in gathered.errors], pa.string()
            )
            errors = pa.array([None if e is None else _message(e) for e in gathered.errors])
        else:
            statuses = pa.array(["ok"] * rows, pa.string())
            errors = pa.nulls(rows, pa.string())
        columns: list[pa.Array] = [
            pa.array(gathered.ids, pa.string()),
            # A view, not a conversion: Arrow's path for a zoned timestamp took 1.3 µs a row.
            pa.array(np.fromiter(gathered.times, np.int64, rows) // 1000).view(_TIME),
            statuses,
            errors,
            pa.array(np.fromiter(gathered.latencies, np.int64, rows) // 1000),
        ]
        for item, field in zip(self.tensors, self.schema.types[len(columns) :], strict=True):
            arrays = gathered.tensors[item.role, item.name]
            columns.append(tensor_column(item, field, arrays, self._digest))
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


def _message(error: Exception) -> str:
    return getattr(error, "message", None) or str(error)


def _hour_of(time_ns: int) -> str:
    moment = dt.datetime.fromtimestamp(time_ns // _HOUR_NS * 3600, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H")
