"""Open Inference Protocol datatypes, their numpy dtypes, and the Tensor value.

BF16 has no numpy dtype: it travels as ``uint16`` holding the upper half of a float32
(the bfloat16 bit pattern) and is handed to ONNX Runtime as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from server.errors import InvalidInput

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "BF16",
    "FP32",
    "FP64",
    "BYTES",
]

DTYPES: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "BF16": np.dtype(np.uint16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

# numpy dtype -> datatype (BF16 is never inferred from a dtype: uint16 means UINT16).
_DATATYPE_OF: dict[np.dtype[np.generic], str] = {
    dt: name for name, dt in DTYPES.items() if name != "BF16"
}

# ONNX Runtime's type strings ("tensor(float)") -> datatype.
ONNX_TYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(bfloat16)": "BF16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

# Datatypes JSON cannot carry faithfully; they must use the binary extension.
BINARY_ONLY = frozenset({"FP16", "BF16"})


def dtype_of(datatype: str) -> np.dtype[np.generic]:
    """The numpy dtype for a wire datatype; ``InvalidInput`` for an unknown name."""
    try:
        return DTYPES[datatype]
    except KeyError:
        raise InvalidInput(f"unknown datatype '{datatype}'") from None


def datatype_of(dtype: np.dtype[np.generic]) -> str:
    """The wire datatype for a numpy dtype (str and bytes arrays are BYTES)."""
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return _DATATYPE_OF[dtype]
    except KeyError:
        raise InvalidInput(f"dtype {dtype} has no Open Inference Protocol datatype") from None


def element_size(datatype: str) -> int:
    """Bytes per element of a fixed-size datatype (BYTES has none and returns 0)."""
    return 0 if datatype == "BYTES" else dtype_of(datatype).itemsize


def element_count(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output as the graph declares it; -1 marks a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def accepts(self, shape: tuple[int, ...]) -> bool:
        if len(shape) != len(self.shape):
            return False
        return all(want < 0 or want == got for want, got in zip(self.shape, shape, strict=True))


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named tensor on its way between an edge and the engine."""

    name: str
    datatype: str
    data: np.ndarray
    parameters: dict[str, object] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.data.shape)
