"""Arrow columns as numbers: what kind a column is, what it casts to, and its numpy view.

Casts are explicit and checked once, up front: a column may feed a model input when numpy
calls the cast ``same_kind`` (ints to floats, float64 to float32, bool to anything), so a
float never silently truncates into an integer input. Text columns are parsed row by row;
a value that does not parse is a row error, not a job error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ColumnKind = Literal["number", "text", "tensor", "other"]


@dataclass(frozen=True, slots=True)
class ColumnType:
    """What a column holds: its kind, element dtype and, for tensors, the shape of one row."""

    kind: ColumnKind
    dtype: np.dtype[np.generic] | None
    row_shape: tuple[int, ...] = ()


def column_type(arrow_type: pa.DataType) -> ColumnType:
    """Classify an Arrow type; FixedSizeList (nested or not) of numbers is a tensor."""
    if pa.types.is_boolean(arrow_type):
        return ColumnType("number", np.dtype(np.bool_))
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return ColumnType("number", np.dtype(arrow_type.to_pandas_dtype()))
    if pa.types.is_decimal(arrow_type):
        return ColumnType("number", np.dtype(np.float64))
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return ColumnType("text", None)
    if pa.types.is_fixed_size_list(arrow_type):
        dims: list[int] = []
        leaf = arrow_type
        while pa.types.is_fixed_size_list(leaf):
            dims.append(leaf.list_size)
            leaf = leaf.value_type
        inner = column_type(leaf)
        if inner.kind == "number":
            return ColumnType("tensor", inner.dtype, tuple(dims))
    return ColumnType("other", None)


def can_cast(source: np.dtype[np.generic] | None, target: np.dtype[np.generic]) -> bool:
    """Whether a column of ``source`` elements (None: text) may feed a ``target`` input."""
    if target.kind not in "biuf":
        return False
    if source is None:  # text: parsed as a number of the target's kind
        return target.kind in "iuf"
    return bool(np.can_cast(source, target, "same_kind"))


def leaf_values(array: pa.Array) -> pa.Array:
    """The innermost values of a (nested) FixedSizeList, aligned with the rows of ``array``.

    Unlike ``flatten``, slots under null lists are kept, so row ``i`` always owns elements
    ``i * size .. (i + 1) * size``.
    """
    while pa.types.is_fixed_size_list(array.type):
        size = array.type.list_size
        array = array.values.slice(array.offset * size, len(array) * size)
    return array


def to_numpy(array: pa.Array, dtype: np.dtype[np.generic]) -> np.ndarray:
    """A null-free numeric (or tensor leaf) array as numpy with ``dtype``.

    Zero-copy when the Arrow buffer already has that dtype; otherwise one deliberate cast
    copy (bit-packed booleans and decimals always copy).
    """
    if pa.types.is_decimal(array.type):
        array = pc.cast(array, pa.float64())
    values: np.ndarray = array.to_numpy(zero_copy_only=not pa.types.is_boolean(array.type))
    return values if values.dtype == dtype else values.astype(dtype)


def parse_text(
    array: pa.Array, dtype: np.dtype[np.generic]
) -> tuple[pa.Array, list[tuple[int, str]]]:
    """Parse a text column into numbers; returns the parsed array (nulls where a value did
    not parse) and ``(position, value)`` for every value that did not."""
    target = pa.int64() if dtype.kind in "iu" else pa.float64()
    try:
        return pc.cast(array, target), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    parse = int if dtype.kind in "iu" else float
    values: list[int | float | None] = []
    failures: list[tuple[int, str]] = []
    for position, text in enumerate(array.to_pylist()):
        if text is None:
            values.append(None)
            continue
        try:
            number = parse(text.strip())
        except ValueError:
            failures.append((position, text))
            values.append(None)
            continue
        values.append(number)
    return pa.array(values, type=target), failures
