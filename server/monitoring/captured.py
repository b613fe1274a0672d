"""Reading captured requests back: a time range of a capture directory as feature columns.

``sluice drift BASELINE CAPTURE_DIR`` points at ``PATH/model=M/version=V`` (or below); the
input tensors' batch rows become one row per value, and the baseline's features are taken from
them by the same rule the online monitor uses (``features.feature_sources``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from server.errors import InvalidInput
from server.monitoring.capture_schema import BATCHING_KEY, METADATA_KEY, ROLE_KEY
from server.monitoring.features import feature_sources
from server.monitoring.window import category_name


def _dataset(path: str) -> ds.Dataset:
    try:
        return ds.dataset(path, format="parquet", partitioning="hive")
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"{path}: cannot read captured data: {exc}") from exc


def is_capture(path: str) -> bool:
    """Whether ``path`` holds Parquet files written by the capture writer."""
    try:
        schema = ds.dataset(path, format="parquet", partitioning="hive").schema
    except (pa.ArrowException, OSError):
        return False
    return bool(schema.metadata) and METADATA_KEY in schema.metadata


def parse_time(text: str, flag: str) -> dt.datetime:
    """An ISO 8601 time; naive times are UTC."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{flag}: '{text}' is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def read_capture(
    path: str, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> pa.Table:
    """Successful captured requests with ``since <= time < until``."""
    dataset = _dataset(path)
    if "model" in dataset.schema.names and "version" in dataset.schema.names:
        where = dataset.to_table(columns=["model", "version"])
        pairs = {(m, v) for m, v in zip(*(c.to_pylist() for c in where.columns), strict=True)}
        if len(pairs) > 1:
            raise InvalidInput(
                f"{path}: holds {len(pairs)} model versions; point at PATH/model=M/version=V"
            )
    condition = pc.field("status") == "ok"
    if since is not None:
        condition &= pc.field("time") >= pa.scalar(since, pa.timestamp("us", tz="UTC"))
    if until is not None:
        condition &= pc.field("time") < pa.scalar(until, pa.timestamp("us", tz="UTC"))
    try:
        return dataset.to_table(filter=condition)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"{path}: cannot read captured data: {exc}") from exc


def _width(field: pa.Field) -> int | None:
    element = field.type.value_type
    if pa.types.is_fixed_size_list(element):
        return int(element.list_size)
    return None if pa.types.is_list(element) else 1


def capture_features(
    table: pa.Table, features: Sequence[str], where: str, categorical: Sequence[str] = ()
) -> pa.Table:
    """One column per baseline feature, one row per batch row of the requests: numeric
    features as float64; a ``categorical`` feature, as the online monitor reads it, from the
    input of one value per row named like it (BYTES as UTF-8 text), left out when there is
    none (the report then says it is missing from the current data)."""
    metadata = table.schema.metadata or {}
    if metadata.get(BATCHING_KEY) == b"0":
        raise InvalidInput(f"{where}: the model does not batch; its inputs have no feature rows")
    inputs = {
        f.name: _width(f)
        for f in table.schema
        if f.metadata and f.metadata.get(ROLE_KEY) == b"input" and pa.types.is_list(f.type)
    }
    chosen = set(categorical)
    named = [n for n in features if n in chosen and inputs.get(n) == 1]
    numeric = [n for n in features if n not in chosen]
    widths = {
        name: width
        for name, width in inputs.items()
        if name not in named and not _is_text(table.schema.field(name))
    }
    sources = feature_sources(widths, numeric, where) if numeric else ()
    columns: dict[str, pa.Array] = {}
    flattened: dict[str, np.ndarray] = {}
    for source in sources:
        if source.tensor not in flattened:
            values = _rows(table.column(source.tensor)).to_numpy(zero_copy_only=False)
            flattened[source.tensor] = values.astype(np.float64).reshape(-1, source.width)
        columns[source.feature] = pa.array(flattened[source.tensor][:, source.column])
    for name in named:
        columns[name] = _text(_rows(table.column(name)))
    ordered = [n for n in features if n in columns]
    return pa.table({name: columns[name] for name in ordered})


def _rows(column: pa.ChunkedArray) -> pa.Array:
    """A captured tensor column's values, one per batch row and column (lists flattened)."""
    rows = pc.list_flatten(column)
    if pa.types.is_fixed_size_list(rows.type) or pa.types.is_list(rows.type):
        rows = pc.list_flatten(rows)
    return rows.combine_chunks() if isinstance(rows, pa.ChunkedArray) else rows


def _is_text(field: pa.Field) -> bool:
    element = field.type.value_type
    while pa.types.is_list(element) or pa.types.is_fixed_size_list(element):
        element = element.value_type
    return bool(pa.types.is_binary(element) or pa.types.is_string(element))


def _text(values: pa.Array) -> pa.Array:
    """BYTES values as text, decoded as the online window decodes them (invalid UTF-8
    replaced, not refused); other values as they are."""
    if not pa.types.is_binary(values.type):
        return values
    try:
        return values.cast(pa.string())
    except pa.ArrowInvalid:
        decoded = [None if v is None else category_name(v) for v in values.to_pylist()]
        return pa.array(decoded, pa.string())
