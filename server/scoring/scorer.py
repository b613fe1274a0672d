"""The per-batch scorer both engines share: feeds → ONNX Runtime → Arrow output columns.

Output columns follow the model's outputs: ``[batch]`` becomes a scalar column, ``[batch, k]``
a FixedSizeList of k, deeper shapes nested FixedSizeLists. Kept columns come first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from server.engine.session import OrtSession
from server.errors import InvalidInput
from server.scoring.feeds import build_feeds
from server.scoring.mapping import Mapping
from server.tensors import TensorSpec, dtype_of

ROW_COLUMN = "row"
REASON_COLUMN = "reason"


@dataclass(frozen=True, slots=True)
class Scored:
    """One scored batch: the output rows, the rows set aside and the bytes copied."""

    output: pa.RecordBatch | None  # None when no row of the batch could be scored
    errors: pa.RecordBatch
    copied_bytes: int


class Scorer:
    """Scores record batches with one session; ``score`` is safe to call from many threads."""

    def __init__(self, session: OrtSession, mapping: Mapping) -> None:
        for spec in session.outputs:
            if len(spec.shape) < 1 or spec.shape[0] != -1:
                raise InvalidInput(
                    f"model output '{spec.name}' has shape {list(spec.shape)}: "
                    "batch scoring needs a dynamic first (batch) dimension"
                )
            if spec.name in mapping.keep:
                raise InvalidInput(f"--keep: column '{spec.name}' has the name of a model output")
        self.session = session
        self.mapping = mapping
        self.outputs = tuple(spec.name for spec in session.outputs)
        types = [output_type(spec) for spec in session.outputs]
        kept = [pa.field(name, mapping.types[name]) for name in mapping.keep]
        outputs = [pa.field(s.name, t) for s, t in zip(session.outputs, types, strict=True) if t]
        # Known up front unless an output has a dynamic inner dimension; used for files
        # where no row could be scored.
        self.output_schema: pa.Schema | None = (
            pa.schema([*kept, *outputs]) if len(outputs) == len(types) else None
        )
        self.error_schema = pa.schema(
            [pa.field(ROW_COLUMN, pa.int64()), pa.field(REASON_COLUMN, pa.string()), *kept]
        )

    def score(self, batch: pa.RecordBatch, first_row: int) -> Scored:
        """Score ``batch``, whose first row is row ``first_row`` of its input file."""
        feeds = build_feeds(self.mapping, batch)
        names = [*feeds.kept.schema.names, *self.outputs]
        output: pa.RecordBatch | None = None
        if feeds.rows:
            results = self.session.run(feeds.tensors)
            arrays = [*feeds.kept.columns, *(to_arrow(results[name]) for name in self.outputs)]
            output = pa.RecordBatch.from_arrays(arrays, names=names)
        positions = pa.array(feeds.error_positions + first_row, type=pa.int64())
        errors = pa.RecordBatch.from_arrays(
            [
                positions,
                pa.array(feeds.error_reasons, type=pa.string()),
                *batch.select(list(self.mapping.keep)).take(feeds.error_positions).columns,
            ],
            names=[ROW_COLUMN, REASON_COLUMN, *self.mapping.keep],
        )
        return Scored(output, errors, feeds.copied_bytes)


def to_arrow(values: np.ndarray) -> pa.Array:
    """A ``[batch, ...]`` array as an Arrow column; zero-copy for contiguous numbers."""
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    array: pa.Array = flat
    for size in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def output_type(spec: TensorSpec) -> pa.DataType | None:
    """The Arrow type of an output column, or None when a dimension is dynamic."""
    if spec.datatype == "BYTES":
        arrow: pa.DataType = pa.string()
    elif spec.datatype == "BF16":
        arrow = pa.uint16()
    else:
        arrow = pa.from_numpy_dtype(dtype_of(spec.datatype))
    for size in reversed(spec.shape[1:]):
        if size < 0:
            return None
        arrow = pa.list_(arrow, size)
    return arrow
