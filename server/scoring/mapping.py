"""Which columns feed which model input, decided once from the schema before any work.

- a model input whose name matches a column gets that column (a FixedSizeList column feeds
  an N-D input, a scalar column a ``[batch]`` or ``[batch, 1]`` input);
- a single remaining 2-D input ``[batch, k]`` gets the feature columns (``--features``, or
  every numeric column not kept and not already used, in file order) stacked into a matrix.

Every mismatch is an ``InvalidInput`` naming the column and the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from server.errors import InvalidInput
from server.scoring.columns import ColumnType, can_cast, column_type
from server.tensors import TensorSpec, dtype_of

SourceKind = Literal["column", "matrix", "tensor"]


@dataclass(frozen=True, slots=True)
class Source:
    """How one model input is built: from one column, or a matrix of several."""

    input: str
    kind: SourceKind
    columns: tuple[str, ...]
    dtype: np.dtype[np.generic]
    row_shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Mapping:
    """The plan for every batch: tensor sources, kept columns and the columns to read."""

    sources: tuple[Source, ...]
    keep: tuple[str, ...]
    types: dict[str, pa.DataType]

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for s in self.sources for c in s.columns))

    @property
    def read_columns(self) -> list[str]:
        """Kept columns first, then features: the only columns read from the files."""
        return list(dict.fromkeys((*self.keep, *self.feature_columns)))

    def check(self, schema: pa.Schema, where: str) -> None:
        """Every input file must have the planned columns with the planned types."""
        for name in self.read_columns:
            index = schema.get_field_index(name)
            if index < 0:
                raise InvalidInput(f"{where}: column '{name}' is missing")
            if schema.field(index).type != self.types[name]:
                raise InvalidInput(
                    f"{where}: column '{name}' is {schema.field(index).type}, "
                    f"but the first input has {self.types[name]}"
                )


def build_mapping(
    schema: pa.Schema,
    inputs: Sequence[TensorSpec],
    features: Sequence[str] | None,
    keep: Sequence[str],
) -> Mapping:
    """Plan the mapping of ``schema``'s columns onto the model ``inputs``."""
    for name in keep:
        if schema.get_field_index(name) < 0:
            raise InvalidInput(f"--keep: column '{name}' is not in the input")
    for spec in inputs:
        if len(spec.shape) < 1 or spec.shape[0] != -1:
            raise InvalidInput(
                f"model input '{spec.name}' has shape {list(spec.shape)}: "
                "batch scoring needs a dynamic first (batch) dimension"
            )
    named = [s for s in inputs if schema.get_field_index(s.name) >= 0]
    rest = [s for s in inputs if schema.get_field_index(s.name) < 0]
    sources = [_named_source(spec, schema.field(spec.name).type) for spec in named]
    if len(rest) > 1:
        missing = ", ".join(f"'{s.name}'" for s in rest)
        raise InvalidInput(
            f"model inputs {missing} have no column of that name; "
            "only a single 2-D input can take the feature columns"
        )
    if rest:
        used = {c for s in sources for c in s.columns}
        sources.append(_matrix_source(rest[0], schema, features, set(keep) | used))
    elif features is not None:
        raise InvalidInput(
            "--features: every model input already has a column of its name "
            f"({', '.join(s.name for s in inputs)})"
        )
    columns = {c for s in sources for c in s.columns} | set(keep)
    types = {name: schema.field(name).type for name in columns}
    return Mapping(tuple(sources), tuple(keep), types)


def _named_source(spec: TensorSpec, arrow_type: pa.DataType) -> Source:
    ctype = column_type(arrow_type)
    target = dtype_of(spec.datatype)
    where = f"column '{spec.name}' ({arrow_type}) for model input '{spec.name}'"
    if spec.datatype == "BYTES":
        if ctype.kind != "text":
            raise InvalidInput(f"{where}: a string input needs a string column")
        return Source(spec.name, "column", (spec.name,), target, ())
    _check_cast(ctype, target, where, spec.datatype)
    row_shape = spec.shape[1:]
    if ctype.kind == "tensor":
        return Source(spec.name, "tensor", (spec.name,), target, _tensor_shape(ctype, spec, where))
    if any(d not in (1, -1) for d in row_shape):
        raise InvalidInput(
            f"{where}: a scalar column cannot feed shape {list(spec.shape)}; "
            "store each row's tensor in a FixedSizeList column"
        )
    return Source(spec.name, "column", (spec.name,), target, tuple(1 for _ in row_shape))


def _tensor_shape(ctype: ColumnType, spec: TensorSpec, where: str) -> tuple[int, ...]:
    want = spec.shape[1:]
    size = math.prod(ctype.row_shape)
    if len(want) == len(ctype.row_shape) and all(
        w in (-1, h) for w, h in zip(want, ctype.row_shape, strict=True)
    ):
        return ctype.row_shape
    known = math.prod(d for d in want if d >= 0)
    dynamic = sum(1 for d in want if d < 0)
    if dynamic == 0 and known == size:
        return want
    if dynamic == 1 and known and size % known == 0:
        return tuple(size // known if d < 0 else d for d in want)
    raise InvalidInput(
        f"{where}: rows of shape {list(ctype.row_shape)} do not fit the input's "
        f"shape {list(spec.shape)}"
    )


def _matrix_source(
    spec: TensorSpec, schema: pa.Schema, features: Sequence[str] | None, exclude: set[str]
) -> Source:
    if len(spec.shape) != 2:
        raise InvalidInput(
            f"model input '{spec.name}' has shape {list(spec.shape)} and no column of its "
            "name: feature columns can only feed a 2-D [batch, k] input"
        )
    target = dtype_of(spec.datatype)
    if features is None:
        names = [
            f.name for f in schema if f.name not in exclude and column_type(f.type).kind == "number"
        ]
    else:
        names = list(features)
    for name in names:
        index = schema.get_field_index(name)
        if index < 0:
            raise InvalidInput(f"--features: column '{name}' is not in the input")
        arrow_type = schema.field(index).type
        where = f"feature column '{name}' ({arrow_type}) for model input '{spec.name}'"
        _check_cast(column_type(arrow_type), target, where, spec.datatype)
        if column_type(arrow_type).kind == "tensor":
            raise InvalidInput(f"{where}: a FixedSizeList column cannot be one feature")
    width = spec.shape[1]
    if not names:
        raise InvalidInput(f"model input '{spec.name}': the input has no numeric feature columns")
    if width >= 0 and width != len(names):
        raise InvalidInput(
            f"model input '{spec.name}' takes {width} features, but {len(names)} columns "
            f"were given: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
        )
    return Source(spec.name, "matrix", tuple(names), target, (len(names),))


def _check_cast(ctype: ColumnType, target: np.dtype[np.generic], where: str, datatype: str) -> None:
    if ctype.kind == "other":
        raise InvalidInput(f"{where}: not a numeric column")
    if not can_cast(ctype.dtype, target):
        raise InvalidInput(f"{where}: cannot cast {ctype.dtype or 'text'} to {datatype} safely")
