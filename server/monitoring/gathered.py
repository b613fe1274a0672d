"""Sampled requests gathered column by column, as the event loop hands them over.

The loop appends each sampled request's id, sampling point, times, error and tensor arrays to
plain lists (a few list appends, no object per request); the monitor's worker takes the whole
set at once and turns each list into one Arrow or NumPy array. An earlier design queued one
object per request and rebuilt the columns row by row on the worker: ~10 µs of Python per
captured request, holding the GIL in bursts that the event loop waited behind (the p99 of
benchmarks/results/capture-20261129-0929-gc.md).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

import numpy as np

from server.engine.observer import Observation
from server.tensors import TensorSpec

TensorKey = tuple[str, str]  # ("input" | "output", tensor name)


class Gathered:
    """Rows of sampled requests: one list per column, every list as long as ``ids``.

    ``tensors`` holds, per kept tensor, each request's array, or None where the request did
    not carry it (a failed request, or outputs the client did not ask for). Arrays of a
    failed request are kept only when they fit the model's spec.
    """

    __slots__ = ("errors", "ids", "latencies", "points", "specs", "tensors", "times")

    def __init__(self, specs: Mapping[TensorKey, TensorSpec]) -> None:
        self.specs = specs
        self.ids: list[str] = []
        self.points: list[float] = []
        self.times: list[int] = []  # wall clock, Unix ns
        self.latencies: list[int] = []  # ns
        self.errors: list[Exception | None] = []
        self.tensors: dict[TensorKey, list[np.ndarray | None]] = {key: [] for key in specs}

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, observation: Observation, request_id: str, point: float) -> None:
        """Add one request (on the loop: a handful of appends)."""
        self.ids.append(request_id)
        self.points.append(point)
        self.times.append(observation.time_ns)
        self.latencies.append(observation.latency_ns)
        self.errors.append(observation.error)
        found = {("input", t.name): t for t in observation.request.inputs}
        for output in observation.outputs or ():
            found["output", output.name] = output
        failed = observation.error is not None
        for key, column in self.tensors.items():
            tensor = found.get(key)
            if tensor is None or (
                failed
                and not (
                    tensor.datatype == self.specs[key].datatype
                    and self.specs[key].accepts(tensor.shape)
                )
            ):
                column.append(None)
            else:
                column.append(tensor.data)

    def select(self, rows: Sequence[int] | np.ndarray) -> Gathered:
        """A new set holding only ``rows`` (indices, in order)."""
        chosen = Gathered(self.specs)
        if len(rows) == 0:
            return chosen
        pick = operator.itemgetter(*(int(i) for i in rows))

        def take(values: list) -> list:  # type: ignore[type-arg]
            found = pick(values)
            return list(found) if len(rows) > 1 else [found]

        chosen.ids = take(self.ids)
        chosen.points = take(self.points)
        chosen.times = take(self.times)
        chosen.latencies = take(self.latencies)
        chosen.errors = take(self.errors)
        chosen.tensors = {key: take(column) for key, column in self.tensors.items()}
        return chosen

    def failed(self) -> bool:
        """Whether any row is a failed request."""
        return self.errors.count(None) != len(self.errors)
