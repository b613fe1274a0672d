"""What an edge hands the engine and gets back: plain values, no transport types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from server.tensors import Tensor


@dataclass(slots=True)
class InferRequest:
    """One inference call. ``outputs`` empty means every output."""

    model: str
    inputs: list[Tensor]
    version: str = ""
    outputs: tuple[str, ...] = ()
    id: str = ""
    timeout_us: int = 0  # 0: the model's default_timeout_ms
    priority: int = 0  # 0: the model's default_priority
    parameters: dict[str, object] = field(default_factory=dict)
    # Polled before the request runs: True once the client has gone away (HTTP disconnect).
    # Edges that can cancel the awaiting task instead (gRPC) leave it unset.
    client_gone: Callable[[], bool] | None = None
    actor: str = ""  # the authenticated token's name (the audit trail's actor); "" anonymous
    # During a sticky rollout: the value of the rollout's header, so one caller sees one
    # version (the request id when empty).
    routing_key: str = ""


@dataclass(slots=True)
class InferResponse:
    model: str
    version: str
    id: str
    outputs: list[Tensor]


@dataclass(frozen=True, slots=True)
class ModelIndexEntry:
    name: str
    version: str
    state: str  # READY, LOADING, UNLOADING, UNAVAILABLE
    reason: str = ""
