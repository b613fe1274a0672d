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


def capture_features(table: pa.Table, features: Sequence[str], where: str) -> pa.Table:
    """One column per baseline feature (float64, one row per batch row of the requests)."""
    metadata = table.schema.metadata or {}
    if metadata.get(BATCHING_KEY) == b"0":
        raise InvalidInput(f"{where}: the model does not batch; its inputs have no feature rows")
    inputs = {
        f.name: _width(f)
        for f in table.schema
        if f.metadata and f.metadata.get(ROLE_KEY) == b"input" and pa.types.is_list(f.type)
    }
    sources = feature_sources(inputs, features, where)
    columns: dict[str, pa.Array] = {}
    flattened: dict[str, np.ndarray] = {}
    for source in sources:
        if source.tensor not in flattened:
            rows = pc.list_flatten(table.column(source.tensor))
            if source.width > 1 or pa.types.is_fixed_size_list(rows.type):
                rows = pc.list_flatten(rows)
            values = rows.to_numpy(zero_copy_only=False).astype(np.float64)
            flattened[source.tensor] = values.reshape(-1, source.width)
        columns[source.feature] = pa.array(flattened[source.tensor][:, source.column])
    return pa.table(columns)
