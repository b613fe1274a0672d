"""Atomic Parquet output: written under a hidden temporary name, fsynced, then renamed.

A reader of the output directory (``pyarrow.dataset`` skips names starting with ``.``)
therefore sees either no file or the complete one, whatever moment the process dies at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from server.errors import InvalidInput

# Output batches are gathered into row groups of this many rows: 4096-row row groups would
# make the files slow to read back, and 64 Ki rows of a few columns is a few MB at most.
ROW_GROUP_ROWS = 65536
TEMP_SUFFIX = ".tmp"


def temp_name(final: Path) -> Path:
    return final.parent / f".{final.name}{TEMP_SUFFIX}"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(source: Path, target: Path) -> None:
    """Flush ``source`` to disk and rename it over ``target`` (same directory)."""
    with source.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(source, target)
    fsync_dir(target.parent)


class OutputFile:
    """One Parquet file being written; ``commit`` publishes it, ``abort`` removes it."""

    def __init__(self, final: Path, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self.final = final
        self.temp = temp_name(final)
        self.rows = 0
        self._row_group_rows = row_group_rows
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self._writer is None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._writer = _parquet_writer(self.temp, batch.schema)
        elif batch.schema != self._writer.schema:
            raise InvalidInput(
                f"{self.final.name}: output columns changed between batches "
                f"({batch.schema} != {self._writer.schema})"
            )
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.rows += batch.num_rows
        if self._pending_rows >= self._row_group_rows:
            self._flush()

    def commit(self, empty_schema: pa.Schema | None) -> bool:
        """Publish the file; with no rows, publish an empty file when ``empty_schema`` is
        given, else nothing. Returns whether a file was published."""
        if self._writer is None:
            if empty_schema is None:
                return False
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._writer = _parquet_writer(self.temp, empty_schema)
        self._flush()
        self._writer.close()
        self._writer = None
        replace_durably(self.temp, self.final)
        return True

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._pending.clear()
        self.temp.unlink(missing_ok=True)

    def _flush(self) -> None:
        if self._pending and self._writer is not None:
            self._writer.write_table(
                pa.Table.from_batches(self._pending), row_group_size=self._row_group_rows
            )
        self._pending.clear()
        self._pending_rows = 0


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    # Dictionary encoding only where values repeat: trying it on model outputs (floats)
    # took 15% of the benchmark's CPU time (Arrow's float memo table) for no saving.
    dictionary = [f.name for f in schema if not _floating(f.type)]
    return pq.ParquetWriter(path, schema, use_dictionary=dictionary)


def _floating(arrow_type: pa.DataType) -> bool:
    while pa.types.is_fixed_size_list(arrow_type):
        arrow_type = arrow_type.value_type
    return bool(pa.types.is_floating(arrow_type))
