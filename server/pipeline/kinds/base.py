"""What a step kind is: the fields it accepts and a ``run`` that writes its outputs.

A kind is one small module exposing ``KIND = StepKind(...)``; ``server.pipeline.kinds.KINDS``
is the table the runner looks kinds up in. ``run`` gets a ``StepContext`` whose ``outputs`` are
temporary paths beside the final ones (the runner publishes them by rename only when ``run``
returns) and returns a small JSON summary. A failed gate or check raises ``StepFailed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.errors import SluiceError
from server.pipeline.spec import Pipeline, PipelineError, Step


class StepFailed(SluiceError):
    """The step ran and failed: a gate, a threshold, an exception in user code."""


@dataclass(frozen=True, slots=True)
class StepContext:
    step: Step
    pipeline: Pipeline
    run_id: str
    inputs: Mapping[str, Path]
    outputs: Mapping[str, Path]
    scratch: Path  # ``.sluice/runs/RUN/STEP``: logs, and a failing check's report

    def param(self, name: str, default: Any = None) -> Any:
        return self.step.params.get(name, default)


@dataclass(frozen=True, slots=True)
class StepKind:
    """A kind's contract. ``params``/``inputs`` of ``None`` accept any name."""

    name: str
    run: Callable[[StepContext], Mapping[str, Any]]
    params: frozenset[str] | None = frozenset()
    required_params: frozenset[str] = frozenset()
    inputs: frozenset[str] | None = frozenset()
    required_inputs: frozenset[str] = frozenset()
    required_outputs: frozenset[str] = frozenset()
    resumable: bool = False  # keep a killed attempt's partial output for the next one
    code: Callable[[Step, Pipeline], dict[str, Path]] | None = None
    check: Callable[[Step], None] | None = field(default=None)


def check_step(step: Step, kind: StepKind) -> None:
    """Every field ``kind`` does not know, or needs and lacks, is a ``PipelineError``."""
    if kind.params is not None:
        for name in sorted(set(step.params) - kind.params):
            allowed = ", ".join(sorted(kind.params)) or "none"
            raise PipelineError(
                f"{step.where(name)}: not a parameter of kind '{kind.name}' (it takes: {allowed})"
            )
    for name in sorted(kind.required_params - set(step.params)):
        raise PipelineError(f"{step.where(name)}: required by kind '{kind.name}'")
    if kind.inputs is not None:
        for name in sorted(set(step.inputs) - kind.inputs):
            allowed = ", ".join(sorted(kind.inputs))
            raise PipelineError(
                f"{step.where('inputs.' + name)}: kind '{kind.name}' reads only: {allowed}"
            )
    for name in sorted(kind.required_inputs - set(step.inputs)):
        raise PipelineError(f"{step.where('inputs.' + name)}: required by kind '{kind.name}'")
    for name in sorted(kind.required_outputs - set(step.outputs)):
        raise PipelineError(f"{step.where('outputs.' + name)}: required by kind '{kind.name}'")
    if kind.check is not None:
        kind.check(step)


def typed(step: Step, name: str, types: type | tuple[type, ...], default: Any) -> Any:
    """Parameter ``name`` of ``step``, checked against ``types`` (bool is not a number)."""
    value = step.params.get(name, default)
    if value is None:
        return None
    numeric = types in (int, float, (int, float))
    if (numeric and isinstance(value, bool)) or not isinstance(value, types):
        names = (
            types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        )
        raise PipelineError(f"{step.where(name)}: must be {names}, got {value!r}")
    return value


def string_list(step: Step, name: str) -> tuple[str, ...] | None:
    value = step.params.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PipelineError(f"{step.where(name)}: must be a list of column names")
    return tuple(value)
