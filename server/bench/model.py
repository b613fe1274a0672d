"""The model as the server describes it: input and output tensors from its metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.errors import InvalidInput
from server.tensors import DTYPES, TensorSpec


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a request must carry: the inputs, and the outputs an answer must hold."""

    name: str
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batched(self) -> bool:
        """Every input's first dimension is dynamic: ``--rows`` rows go in one request."""
        return bool(self.inputs) and all(s.shape[:1] == (-1,) for s in self.inputs)


def model_info(metadata: Mapping[str, Any], version: str) -> ModelInfo:
    """Parse a V2 model metadata body (HTTP JSON, or the gRPC message as a dict)."""
    try:
        inputs = tuple(_spec(t) for t in metadata["inputs"])
        outputs = tuple(_spec(t) for t in metadata.get("outputs", ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"the server's model metadata is malformed: {exc!r}") from exc
    if not inputs:
        raise InvalidInput(f"model '{metadata.get('name', '?')}' declares no inputs")
    return ModelInfo(str(metadata.get("name", "")), version, inputs, outputs)


def _spec(tensor: Mapping[str, Any]) -> TensorSpec:
    datatype = str(tensor["datatype"])
    if datatype not in DTYPES:
        raise ValueError(f"unknown datatype '{datatype}' for tensor '{tensor['name']}'")
    return TensorSpec(str(tensor["name"]), datatype, tuple(int(d) for d in tensor["shape"]))


def resolve_shapes(
    info: ModelInfo, rows: int, overrides: Mapping[str, Sequence[int]]
) -> dict[str, tuple[int, ...]]:
    """The concrete shape of every input in one request.

    A dynamic first dimension takes ``rows``; any other dynamic dimension needs ``--shape``.
    An override is taken as given (the server may reject it: that is what it tests).
    """
    names = {s.name for s in info.inputs}
    for name in overrides:
        if name not in names:
            raise InvalidInput(f"--shape: the model has no input '{name}' (it has {sorted(names)})")
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in info.inputs:
        if spec.name in overrides:
            shapes[spec.name] = tuple(overrides[spec.name])
            continue
        shape = [rows if i == 0 and d < 0 else d for i, d in enumerate(spec.shape)]
        if any(d < 0 for d in shape):
            raise InvalidInput(
                f"input '{spec.name}' has shape {list(spec.shape)}: give its dynamic "
                f"dimensions with --shape {spec.name}=" + ",".join(str(rows) for _ in shape)
            )
        shapes[spec.name] = tuple(shape)
    return shapes


def expected_outputs(info: ModelInfo, rows: int) -> dict[str, tuple[int, ...]]:
    """Output shapes an answer must have; -1 still matches any size (besides the batch)."""
    return {
        spec.name: tuple(
            rows if i == 0 and d < 0 and info.batched else d for i, d in enumerate(spec.shape)
        )
        for spec in info.outputs
    }


def shape_matches(want: Sequence[int], got: Sequence[int]) -> bool:
    return len(want) == len(got) and all(w < 0 or w == g for w, g in zip(want, got, strict=True))
