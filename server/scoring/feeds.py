"""One record batch → model input tensors, with the rows that cannot be scored set aside.

A row cannot be scored when a feature is null, NaN or text that does not parse as a number.
Such rows are filtered out (a copy, on the error path only) and reported by position with
the first reason found, so the caller can fail on them or write them to the errors file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from server.scoring.columns import column_type, leaf_values, parse_text, to_numpy
from server.scoring.mapping import Mapping, Source


@dataclass(frozen=True, slots=True)
class Feeds:
    """The tensors for the scorable rows, their kept columns and the rows left out."""

    tensors: dict[str, np.ndarray]
    kept: pa.RecordBatch
    error_positions: np.ndarray
    error_reasons: list[str]
    copied_bytes: int

    @property
    def rows(self) -> int:
        return int(self.kept.num_rows)


def build_feeds(mapping: Mapping, batch: pa.RecordBatch) -> Feeds:
    """Build the model feed for ``batch`` following ``mapping``."""
    reasons: dict[int, str] = {}
    dtypes = {c: s.dtype for s in reversed(mapping.sources) for c in s.columns}
    arrays: dict[str, pa.Array] = {}
    for name in mapping.feature_columns:
        array = batch.column(name)
        kind = column_type(array.type).kind
        if kind == "text" and dtypes[name].kind != "O":
            array, failures = parse_text(array, dtypes[name])
            for position, text in failures:
                reasons.setdefault(position, f"column '{name}': cannot parse {text!r} as a number")
        if array.null_count:
            for null in np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False)):
                reasons.setdefault(int(null), f"column '{name}' is null")
        if kind == "tensor":
            leaf = leaf_values(array)
            if leaf.null_count:
                size = len(leaf) // max(len(array), 1)
                nulls = np.flatnonzero(leaf.is_null().to_numpy(zero_copy_only=False))
                for position in np.unique(nulls // size):
                    reasons.setdefault(int(position), f"column '{name}' has a null element")
        arrays[name] = array
    kept = batch.select(list(mapping.keep))
    positions = np.arange(batch.num_rows)
    if reasons:
        keep_rows = np.ones(batch.num_rows, dtype=np.bool_)
        keep_rows[list(reasons)] = False
        mask = pa.array(keep_rows)
        arrays = {name: array.filter(mask) for name, array in arrays.items()}
        kept, positions = kept.filter(mask), positions[keep_rows]
    tensors: dict[str, np.ndarray] = {}
    copied = 0
    for source in mapping.sources:
        tensor, count = _tensor(source, arrays, kept.num_rows)
        tensors[source.input], copied = tensor, copied + count
    nan_rows = _nan_rows(mapping, tensors, kept.num_rows)
    if nan_rows:
        for row, reason in nan_rows.items():
            reasons[int(positions[row])] = reason
        good = np.ones(kept.num_rows, dtype=np.bool_)
        good[list(nan_rows)] = False
        tensors = {name: t[good] for name, t in tensors.items()}
        kept, positions = kept.filter(pa.array(good)), positions[good]
    order = sorted(reasons)
    return Feeds(
        tensors, kept, np.array(order, dtype=np.int64), [reasons[p] for p in order], copied
    )


def _tensor(source: Source, arrays: dict[str, pa.Array], rows: int) -> tuple[np.ndarray, int]:
    """The tensor for one source and the bytes copied to build it."""
    if source.kind == "matrix":
        # The one deliberate copy on the fast path: columns (each zero-copy) into the
        # row-major matrix the model reads, casting on the way.
        matrix = np.empty((rows, len(source.columns)), dtype=source.dtype)
        for j, name in enumerate(source.columns):
            array = arrays[name]
            matrix[:, j] = (
                array.to_numpy(zero_copy_only=True)
                if pa.types.is_integer(array.type) or pa.types.is_floating(array.type)
                else to_numpy(array, source.dtype)
            )
        return matrix, matrix.nbytes
    array = arrays[source.columns[0]]
    if source.dtype.kind == "O":
        values = array.to_numpy(zero_copy_only=False)
        return values, 0
    if source.kind == "tensor":
        array = leaf_values(array)
    values = to_numpy(array, source.dtype)
    copied = values.nbytes if values.flags.owndata else 0
    return values.reshape((rows, *source.row_shape)), copied


def _nan_rows(mapping: Mapping, tensors: dict[str, np.ndarray], rows: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for source in mapping.sources:
        tensor = tensors[source.input]
        # One reduction finds "no NaN" in the common case; the per-row search runs only
        # when the sum is NaN (a NaN, or inf - inf).
        if tensor.dtype.kind != "f" or rows == 0 or not np.isnan(np.sum(tensor)):
            continue
        flat = np.isnan(tensor.reshape(rows, -1))
        for row in np.flatnonzero(flat.any(axis=1)):
            if source.kind == "matrix":
                column = source.columns[int(np.argmax(flat[row]))]
                found.setdefault(int(row), f"column '{column}' is NaN")
            else:
                found.setdefault(int(row), f"column '{source.columns[0]}' has a NaN")
    return found
