"""Arrow data in, numpy arrays and category counts out.

Reading goes through ``pyarrow.dataset``, so a file, a directory of files or an ``s3://`` path
all work, and only the requested columns are read. Every pyarrow error is translated to
``InvalidInput`` in ``_arrow_errors``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from server.errors import InvalidInput

FeatureKind = Literal["numeric", "categorical"]
FloatArray = npt.NDArray[np.float64]

_ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")


@contextmanager
def _arrow_errors(path: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path}: no such file or directory") from exc
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"{path}: cannot read as Parquet or Arrow: {exc}") from exc


@contextmanager
def _value_errors() -> Iterator[None]:
    try:
        yield
    except pa.ArrowException as exc:
        raise InvalidInput(f"cannot convert values: {exc}") from exc


def read_table(path: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read ``columns`` (all when None) of a Parquet or Arrow IPC file or directory.

    Columns missing from the data are left out rather than failing the read; callers report
    them per feature.
    """
    file_format: str | ds.FileFormat = "arrow"
    if not path.lower().endswith(_ARROW_SUFFIXES):
        # Pre-buffering pays on object stores; on local files it only left the reader's
        # scratch in other threads' allocator heaps: 56 or 190 MiB after reading the 310 MiB
        # drift benchmark, run to run, against a steady 61 MiB without it, and no slower.
        remote = "://" in path
        scan = ds.ParquetFragmentScanOptions(pre_buffer=remote)
        file_format = ds.ParquetFileFormat(default_fragment_scan_options=scan)
    with _arrow_errors(path):
        dataset = ds.dataset(path, format=file_format)
        present = set(dataset.schema.names)
        wanted = None if columns is None else [name for name in columns if name in present]
        table = dataset.to_table(columns=wanted)
    # Hand the reader's freed scratch back to the OS rather than keep it pooled.
    pa.default_memory_pool().release_unused()
    return table


def feature_kind(arrow_type: pa.DataType) -> FeatureKind | None:
    """How a column is profiled: numbers are numeric; strings, dictionaries and booleans are
    categorical; anything else (timestamps, lists, binary) is not supported."""
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "numeric"
    if (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_dictionary(arrow_type)
        or pa.types.is_boolean(arrow_type)
    ):
        return "categorical"
    return None


def numeric_chunks(column: pa.ChunkedArray) -> list[FloatArray]:
    """The column's chunks as float64 arrays with nulls as NaN.

    Zero-copy for float64 chunks without nulls (the common Parquet case); other chunks are
    copied once each (integers and float32 widened, nulls filled). Chunks are not concatenated: the
    kernels compact them straight into one buffer, which saves a full copy of the column.
    """
    arrays: list[FloatArray] = []
    for chunk in column.chunks:
        if chunk.type == pa.float64() and chunk.null_count == 0:
            arrays.append(chunk.to_numpy(zero_copy_only=True))
            continue
        with _value_errors():
            # Unsafe: integers beyond 2**53 round to the nearest double, which statistics of a
            # distribution can afford; a safe cast would reject the column.
            as_float = (
                pc.cast(chunk, pa.float64(), safe=False) if chunk.type != pa.float64() else chunk
            )
            filled = pc.fill_null(as_float, np.nan) if as_float.null_count else as_float
        arrays.append(filled.to_numpy(zero_copy_only=False))
    return arrays


def category_counts(column: pa.ChunkedArray) -> tuple[dict[str, int], int]:
    """``({category: count}, nulls)`` over the column; categories are rendered as strings."""
    with _value_errors():
        if pa.types.is_dictionary(column.type):
            column = pc.cast(column, column.type.value_type)
        entries = pc.value_counts(column).to_pylist() if len(column) > 0 else []
    counts: dict[str, int] = {}
    for entry in entries:
        value = entry["values"]
        if value is None:
            continue
        key = str(value).lower() if isinstance(value, bool) else str(value)
        counts[key] = counts.get(key, 0) + int(entry["counts"])
    return counts, column.null_count
