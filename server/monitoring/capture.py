"""Captured requests as Parquet: one row per inference request, committed atomically.

A file lives at ``PATH/model=M/version=V/date=YYYY-MM-DD/hour=HH/part-*.parquet``. It is
written under a hidden temporary name (``pyarrow.dataset`` skips names starting with ``.``)
and renamed into place when it reaches ``max_file_mb`` or ``max_file_seconds``, when the hour
changes, and on close: a reader never sees a partial file, and a killed server loses at most
the open file's rows.

Columns: ``request_id``, ``time`` (UTC, µs), ``status`` (``ok`` or the error class),
``error``, ``latency_us``, then each captured tensor: a list over the request's batch rows of
the row's values (a scalar, or a FixedSizeList of the flattened non-batch dims), so the rows of
one batched request stay together. Model and version come from the partition path. A tensor
named like one of those columns is written as ``input.NAME`` or ``output.NAME``. Each writer
is used by one thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from server.engine.observer import Observation, ObservedModel
from server.errors import ConfigError
from server.metrics import CaptureMetrics
from server.monitoring.sampling import Sampled
from server.settings import CaptureConfig
from server.tensors import Tensor, TensorSpec

log = logging.getLogger(__name__)

METADATA_KEY = b"sluice.capture"
ROLE_KEY = b"sluice.role"
DATATYPE_KEY = b"sluice.datatype"
SHAPE_KEY = b"sluice.shape"
BATCHING_KEY = b"sluice.batching"
RESERVED = (
    "request_id",
    "time",
    "status",
    "error",
    "latency_us",
    "model",
    "version",
    "date",
    "hour",
)
ROW_GROUP_ROWS = 4096
_HOUR_NS = 3600 * 10**9

_ARROW_TYPES: dict[str, pa.DataType] = {
    "BOOL": pa.bool_(),
    "UINT8": pa.uint8(),
    "UINT16": pa.uint16(),
    "UINT32": pa.uint32(),
    "UINT64": pa.uint64(),
    "INT8": pa.int8(),
    "INT16": pa.int16(),
    "INT32": pa.int32(),
    "INT64": pa.int64(),
    "FP16": pa.float16(),
    "BF16": pa.uint16(),  # the bfloat16 bit pattern, as the engine holds it
    "FP32": pa.float32(),
    "FP64": pa.float64(),
    "BYTES": pa.binary(),
}


@dataclass(frozen=True, slots=True)
class CapturedTensor:
    """One captured tensor: where it comes from and how its column is laid out."""

    column: str
    name: str
    role: str  # "input" or "output"
    spec: TensorSpec
    batching: bool
    hashed: bool

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.spec.shape[1:] if self.batching else self.spec.shape

    @property
    def row_width(self) -> int | None:
        """Values per batch row, None when a dim is dynamic (then a variable list)."""
        if not self.batching or any(d < 0 for d in self.row_shape):
            return None
        return int(np.prod(self.row_shape, dtype=np.int64))

    @property
    def field(self) -> pa.Field:
        scalar = pa.string() if self.hashed else _ARROW_TYPES[self.spec.datatype]
        width = self.row_width
        if not self.batching:
            element = scalar  # the whole tensor flattened: one "row" of values per request
        elif width is None:
            element = pa.list_(scalar)
        elif self.row_shape == ():
            element = scalar
        else:
            element = pa.list_(scalar, width)
        metadata = {
            ROLE_KEY: self.role.encode(),
            DATATYPE_KEY: self.spec.datatype.encode(),
            SHAPE_KEY: json.dumps(list(self.spec.shape)).encode(),
        }
        return pa.field(self.column, pa.list_(element), metadata=metadata)


def captured_tensors(model: ObservedModel, config: CaptureConfig) -> tuple[CapturedTensor, ...]:
    """The tensors ``config`` keeps, inputs then outputs, with their column names."""
    where = f"model '{model.name}' [capture]"
    known = set(model.inputs) | set(model.outputs)
    for key in ("columns_allow", "columns_deny", "hash_columns"):
        unknown = [name for name in getattr(config, key) if name not in known]
        if unknown:
            raise ConfigError(f"{where} {key}: no tensor named {', '.join(unknown)}")
    roles = [("input", spec) for spec in model.inputs.values()]
    if config.include_outputs:
        roles += [("output", spec) for spec in model.outputs.values()]
    chosen: list[CapturedTensor] = []
    taken = set(RESERVED)
    for role, spec in roles:
        if config.columns_allow and spec.name not in config.columns_allow:
            continue
        if spec.name in config.columns_deny:
            continue
        column = spec.name if spec.name not in taken else f"{role}.{spec.name}"
        taken.add(column)
        hashed = spec.name in config.hash_columns
        chosen.append(CapturedTensor(column, spec.name, role, spec, model.batching, hashed))
    return tuple(chosen)


def capture_schema(tensors: Sequence[CapturedTensor]) -> pa.Schema:
    fields = [
        pa.field("request_id", pa.string()),
        pa.field("time", pa.timestamp("us", tz="UTC")),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("latency_us", pa.int64()),
        *(t.field for t in tensors),
    ]
    batching = any(t.batching for t in tensors)
    return pa.schema(
        fields, metadata={METADATA_KEY: b"1", BATCHING_KEY: b"1" if batching else b"0"}
    )


def _keyed_hasher(key: bytes) -> Callable[[object], str]:
    def digest(value: object) -> str:
        raw = value if isinstance(value, bytes) else str(value).encode()
        return hashlib.blake2b(raw, key=key, digest_size=16).hexdigest()

    return digest


def _conforms(tensor: Tensor, spec: TensorSpec) -> bool:
    return tensor.datatype == spec.datatype and spec.accepts(tensor.shape)


def tensor_column(
    item: CapturedTensor, tensors: Sequence[Tensor | None], digest: Callable[[object], str]
) -> pa.Array:
    """One column of a batch: a list per request over its rows (null when not captured)."""
    element_type = item.field.type.value_type
    scalar_type = pa.string() if item.hashed else _ARROW_TYPES[item.spec.datatype]
    present = [t.data for t in tensors if t is not None]
    flats = [a.reshape(-1) for a in present]  # a copy only for a non-contiguous tensor
    sizes = [f.shape[0] for f in flats]
    if item.spec.datatype == "BYTES" or item.hashed:
        objects = [v for flat in flats for v in flat.tolist()]
        if item.hashed:
            objects = [digest(v) for v in objects]
        values = pa.array(objects, type=scalar_type)
    else:
        joined = np.concatenate(flats) if flats else np.empty(0, _numpy_of(item.spec.datatype))
        values = pa.array(joined, type=scalar_type)
    counts = sizes  # not batching: the whole tensor, flattened, is the request's one list
    if item.batching:
        counts = [a.shape[0] if a.ndim else 1 for a in present]
        if pa.types.is_fixed_size_list(element_type):
            values = pa.FixedSizeListArray.from_arrays(values, element_type.list_size)
        elif pa.types.is_list(element_type):  # a dynamic non-batch dim: each row a list
            per_row = [size // max(rows, 1) for size, rows in zip(sizes, counts, strict=True)]
            inner = np.repeat(per_row, counts).astype(np.int32)
            values = pa.ListArray.from_arrays(_offsets(inner), values)
    if len(present) == len(tensors):
        lengths = np.array(counts, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values)
    found = iter(counts)
    lengths = np.array([next(found) if t is not None else 0 for t in tensors], dtype=np.int32)
    mask = pa.array(np.array([t is None for t in tensors]))
    return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values, mask=mask)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _numpy_of(datatype: str) -> np.dtype[np.generic]:
    from server.tensors import dtype_of

    return dtype_of(datatype)


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
        self._digest = _keyed_hasher(hash_key.encode())
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

    def add(self, sampled: Sequence[Sampled]) -> None:
        """Turn requests into Arrow rows now (a few Arrow arrays live on, not thousands of
        Python objects for the garbage collector to walk); write a row group per
        ``ROW_GROUP_ROWS``; a new hour commits the open file first."""
        start = 0
        for i, item in enumerate(sampled):
            hour = item.observation.time_ns // _HOUR_NS
            if hour != self._hour_number:
                self._take(sampled[start:i])
                if self._rows_in_file + self._pending_rows:
                    self.commit()
                self._hour_number = hour
                self._hour = _hour_of(item.observation.time_ns)
                start = i
        self._take(sampled[start:])

    def _take(self, sampled: Sequence[Sampled]) -> None:
        if not sampled:
            return
        if self._rows_in_file + self._pending_rows == 0:
            self._opened = time.monotonic()
        try:
            batch = self._batch(sampled)
        except (pa.ArrowException, ValueError, TypeError) as exc:  # values Arrow refused
            log.error("capture of model '%s': %d rows lost: %s", self.model.name, len(sampled), exc)
            self.metrics.dropped.labels(self.model.name, self.model.version, "write_error").inc(
                len(sampled)
            )
            return
        self._pending.append(batch)
        self._pending_rows += len(sampled)
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
        # floats, and encoding them as dictionaries took ~20% of the worker's time.
        self._writer = pq.ParquetWriter(
            self._stream,
            self.schema,
            compression=self.config.compression,
            use_dictionary=["status", "error"],
            write_statistics=["time", "status"],
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

    def _batch(self, sampled: Sequence[Sampled]) -> pa.RecordBatch:
        observations = [s.observation for s in sampled]
        statuses = ["ok" if o.error is None else type(o.error).__name__ for o in observations]
        columns: list[pa.Array] = [
            pa.array([s.request_id for s in sampled], pa.string()),
            pa.array(
                np.array([o.time_ns // 1000 for o in observations], dtype=np.int64),
                pa.timestamp("us", tz="UTC"),
            ),
            pa.array(statuses, pa.string()),
            pa.array([None if o.error is None else o.error.message for o in observations]),
            pa.array(np.array([o.latency_ns // 1000 for o in observations], dtype=np.int64)),
        ]
        found = [_tensors_of(o) for o in observations]
        rejected = any(o.error is not None for o in observations)
        for item in self.tensors:
            column = [f.get((item.role, item.name)) for f in found]
            if rejected:  # a rejected request's inputs may not fit the model
                column = [
                    t if t is None or o.error is None or _conforms(t, item.spec) else None
                    for t, o in zip(column, observations, strict=True)
                ]
            columns.append(tensor_column(item, column, self._digest))
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


def _tensors_of(observation: Observation) -> dict[tuple[str, str], Tensor]:
    found = {("input", t.name): t for t in observation.request.inputs}
    for tensor in observation.outputs or ():
        found["output", tensor.name] = tensor
    return found


def _hour_of(time_ns: int) -> str:
    moment = dt.datetime.fromtimestamp(time_ns // _HOUR_NS * 3600, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H")
