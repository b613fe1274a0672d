"""Requests from the rows of a Parquet file, with ``sluice score``'s column mapping:

- a model input whose name matches a column gets that column (a FixedSizeList column feeds an
  N-D input, a scalar column a ``[batch]`` or ``[batch, 1]`` input, a string column BYTES);
- a single remaining 2-D input ``[batch, k]`` gets the feature columns (``--features``, or
  every numeric column not already used, in file order) stacked into a matrix.

(The rule is ``server.scoring.mapping``'s, restated here because bench imports nothing of the
server; a mismatch is a ``ConfigError`` naming the column and the input.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from server.bench.config import PAYLOAD_BYTES_LIMIT
from server.bench.model import ModelInfo
from server.errors import ConfigError
from server.tensors import TensorSpec, dtype_of

MAX_REQUESTS = 4096  # distinct requests taken from the file at most


def parquet_inputs(
    path: Path, info: ModelInfo, rows: int, features: Sequence[str] | None
) -> Iterator[dict[str, np.ndarray]]:
    """One dict of input arrays per ``rows`` consecutive rows; a partial tail is dropped."""
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(f"--input {path}: not a readable Parquet file ({exc})") from exc
    plan = _plan(file.schema_arrow, info, features)
    if file.metadata.num_rows < rows:
        raise ConfigError(f"--input {path} has {file.metadata.num_rows} rows, fewer than --rows")
    columns = sorted({c for cols in plan.values() for c in cols})
    batches, held = [], 0
    for batch in file.iter_batches(batch_size=max(rows, 1024), columns=columns):
        batches.append(batch)
        held += batch.nbytes
        if held >= PAYLOAD_BYTES_LIMIT or sum(b.num_rows for b in batches) >= rows * MAX_REQUESTS:
            break
    table = pa.Table.from_batches(batches)
    for start in range(0, min(table.num_rows // rows, MAX_REQUESTS) * rows, rows):
        yield _arrays(table.slice(start, rows), info, plan)


def _plan(
    schema: pa.Schema, info: ModelInfo, features: Sequence[str] | None
) -> dict[str, tuple[str, ...]]:
    """Input name -> the columns that feed it."""
    plan: dict[str, tuple[str, ...]] = {
        s.name: (s.name,) for s in info.inputs if schema.get_field_index(s.name) >= 0
    }
    rest = [s for s in info.inputs if s.name not in plan]
    if len(rest) > 1:
        missing = ", ".join(f"'{s.name}'" for s in rest)
        raise ConfigError(
            f"--input: model inputs {missing} have no column of that name; only a single "
            "2-D input can take the feature columns"
        )
    if not rest:
        if features is not None:
            raise ConfigError("--features: every model input already has a column of its name")
        return plan
    spec = rest[0]
    if len(spec.shape) != 2:
        raise ConfigError(
            f"--input: model input '{spec.name}' has shape {list(spec.shape)} and no column of "
            "its name: feature columns can only feed a 2-D [batch, k] input"
        )
    used = {c for cols in plan.values() for c in cols}
    if features is None:
        names = [f.name for f in schema if f.name not in used and _numeric(f.type)]
    else:
        names = list(features)
        for name in names:
            if schema.get_field_index(name) < 0:
                raise ConfigError(f"--features: column '{name}' is not in the input")
            if not _numeric(schema.field(name).type):
                raise ConfigError(
                    f"--features: column '{name}' is {schema.field(name).type}, not a number"
                )
    if not names:
        raise ConfigError(f"--input: model input '{spec.name}': the file has no numeric columns")
    if spec.shape[1] >= 0 and spec.shape[1] != len(names):
        raise ConfigError(
            f"--input: model input '{spec.name}' takes {spec.shape[1]} features, but the file "
            f"has {len(names)} numeric columns: {', '.join(names[:8])}"
            f"{', ...' if len(names) > 8 else ''}"
        )
    plan[spec.name] = tuple(names)
    return plan


def _numeric(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_boolean(arrow_type)
    )


def _arrays(
    table: pa.Table, info: ModelInfo, plan: dict[str, tuple[str, ...]]
) -> dict[str, np.ndarray]:
    out = {}
    for spec in info.inputs:
        cols = plan[spec.name]
        if len(cols) > 1 or spec.name not in cols:
            out[spec.name] = np.column_stack([_column(table, c, spec) for c in cols])
        else:
            out[spec.name] = _shaped(_column(table, cols[0], spec), spec)
    return out


def _column(table: pa.Table, name: str, spec: TensorSpec) -> np.ndarray:
    column = table.column(name).combine_chunks()
    where = f"column '{name}' ({column.type}) for model input '{spec.name}'"
    if column.null_count:
        raise ConfigError(f"--input: {where} has null values; bench sends whole rows")
    if spec.datatype == "BYTES":
        if not (
            pa.types.is_string(column.type)
            or pa.types.is_binary(column.type)
            or pa.types.is_large_string(column.type)
        ):
            raise ConfigError(f"--input: {where}: a BYTES input needs a string column")
        return np.array(
            [v if isinstance(v, bytes) else v.encode() for v in column.to_pylist()], dtype=object
        )
    target = dtype_of(spec.datatype)
    shape: list[int] = [len(column)]
    values = column
    while pa.types.is_fixed_size_list(values.type):
        shape.append(values.type.list_size)
        values = values.flatten()
    if not _numeric(values.type):
        raise ConfigError(f"--input: {where}: not a numeric column")
    array = values.to_numpy(zero_copy_only=False)
    if not np.can_cast(array.dtype, target, "same_kind"):
        raise ConfigError(f"--input: {where}: cannot cast {array.dtype} to {spec.datatype} safely")
    shaped: np.ndarray = array.astype(target, copy=False).reshape(shape)
    return shaped


def _shaped(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A column's rows as the input's shape: ``[n]`` -> ``[n, 1]`` for a ``[-1, 1]`` input."""
    want = spec.shape
    if len(want) == array.ndim:
        return array
    size = int(np.prod(array.shape[1:]))
    row = [d if d >= 0 else -1 for d in want[1:]]
    if (all(d in (1, -1) for d in row) and size == 1) or (
        -1 not in row and int(np.prod(row)) == size
    ):
        return array.reshape(array.shape[0], *[1 if d < 0 else d for d in row])
    raise ConfigError(
        f"--input: column '{spec.name}' rows of shape {list(array.shape[1:])} do not fit the "
        f"input's shape {list(want)}"
    )
