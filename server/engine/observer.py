"""The seam through which services watch inference without the engine knowing them.

The engine tells an ``InferenceObserver`` when a model version is loaded or retired and hands
it every finished request. ``observe`` runs on the event loop inside ``Engine.infer``: it must
only decide and hand over (a sampling hash and a few bounded list appends), never block or write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from server.errors import SluiceError
from server.settings import ModelConfig
from server.tensors import Tensor, TensorSpec

from .requests import InferRequest


@dataclass(frozen=True, slots=True)
class ObservedModel:
    """What an observer learns about a model version when it is loaded."""

    name: str
    version: str
    config: ModelConfig
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    batching: bool


@dataclass(slots=True)  # not frozen: a frozen __init__ cost 0.4 us more on the event loop
class Observation:
    """One finished request: ``outputs`` when it succeeded, ``error`` when it failed."""

    model: str
    version: str
    request: InferRequest
    outputs: list[Tensor] | None
    error: SluiceError | None
    latency_ns: int
    time_ns: int  # wall clock (Unix ns) when the answer was ready


class InferenceObserver(Protocol):
    def attach(self, model: ObservedModel) -> None:
        """Called off the loop before the version serves; a ``SluiceError`` fails the load."""

    def detach(self, name: str, version: str) -> None:
        """Called on the loop once the version has drained; must not block."""

    def observe(self, observation: Observation) -> None:
        """Called on the loop for every finished request; must only enqueue."""
