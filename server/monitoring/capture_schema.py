"""The captured row's layout: which tensors become which typed Arrow columns.

Columns: ``request_id``, ``time`` (UTC, µs), ``status`` (``ok`` or the error class),
``error``, ``latency_us``, then each captured tensor: a list over the request's batch rows of
the row's values (a scalar, or a FixedSizeList of the flattened non-batch dims), so the rows of
one batched request stay together. Model and version come from the partition path. A tensor
named like one of those columns is written as ``input.NAME`` or ``output.NAME``. Field
metadata records each tensor's role, datatype and shape, so a reader can map features back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from server.engine.observer import ObservedModel
from server.errors import ConfigError
from server.settings import CaptureConfig
from server.tensors import TensorSpec, dtype_of

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


def keyed_hasher(key: bytes) -> Callable[[object], str]:
    def digest(value: object) -> str:
        raw = value if isinstance(value, bytes) else str(value).encode()
        return hashlib.blake2b(raw, key=key, digest_size=16).hexdigest()

    return digest


def tensor_column(
    item: CapturedTensor,
    column_type: pa.DataType,
    arrays: Sequence[np.ndarray | None],
    digest: Callable[[object], str],
) -> pa.Array:
    """One column of a batch (of type ``column_type``, ``item.field``'s): a list per request
    over its rows, null where the request did not carry the tensor."""
    element_type = column_type.value_type
    scalar_type = pa.string() if item.hashed else _ARROW_TYPES[item.spec.datatype]
    present = [a for a in arrays if a is not None]
    if item.spec.datatype == "BYTES" or item.hashed:
        objects = [v for a in present for v in a.reshape(-1).tolist()]
        if item.hashed:
            objects = [digest(v) for v in objects]
        values = pa.array(objects, type=scalar_type)
    else:
        values = pa.array(_joined(present, item.spec.datatype), type=scalar_type)
    if item.batching:
        counts = [a.shape[0] if a.ndim else 1 for a in present]
        if pa.types.is_fixed_size_list(element_type):
            values = pa.FixedSizeListArray.from_arrays(values, element_type.list_size)
        elif pa.types.is_list(element_type):  # a dynamic non-batch dim: each row a list
            sizes = [a.size for a in present]
            per_row = [size // max(rows, 1) for size, rows in zip(sizes, counts, strict=True)]
            inner = np.repeat(per_row, counts).astype(np.int32)
            values = pa.ListArray.from_arrays(_offsets(inner), values)
    else:  # not batching: the whole tensor, flattened, is the request's one list
        counts = [a.size for a in present]
    if len(present) == len(arrays):
        lengths = np.array(counts, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values)
    found = iter(counts)
    lengths = np.array([next(found) if a is not None else 0 for a in arrays], dtype=np.int32)
    mask = pa.array(np.array([a is None for a in arrays]))
    return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values, mask=mask)


def _joined(arrays: Sequence[np.ndarray], datatype: str) -> np.ndarray:
    """The arrays' values, flattened and joined: one concatenation when their non-batch dims
    agree (the usual case), a flattening per array otherwise."""
    if not arrays:
        return np.empty(0, dtype_of(datatype))
    try:
        return np.concatenate(arrays).reshape(-1)
    except ValueError:  # scalars, or dims that differ between requests
        return np.concatenate([a.reshape(-1) for a in arrays])


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return offsets
