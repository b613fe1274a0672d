"""Shadow traffic: a copy of a served request runs on the mirror version after the answer
has gone, its outputs are compared with the served ones, and then discarded.

Off the request path by construction: ``offer`` only appends to a bounded queue (full, or
real requests waiting for either version: the copy is dropped and counted, so under load
mirroring is what goes first), and a few worker tasks
submit the copies at the target's lowest priority. A copy never fails or delays the request
it copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import numpy as np

from server.errors import SluiceError
from server.metrics import Metrics
from server.tensors import Tensor

from .batcher import Arrays
from .models import ModelVersion

log = logging.getLogger(__name__)

# Rows agree when argmax agrees (several columns) or values are this close (one column).
RTOL = 1e-3
ATOL = 1e-5


@dataclass(slots=True)
class Tally:
    """Mirrored rows compared, and those that disagreed, since the last ``take``."""

    rows: int = 0
    disagreeing: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class _Copy:
    target: ModelVersion
    inputs: list[Tensor]
    served: Arrays


class Mirror:
    def __init__(self, metrics: Metrics, capacity: int = 64, workers: int = 2) -> None:
        self._metrics = metrics
        self._capacity = capacity
        self._workers = workers
        self._queue: asyncio.Queue[_Copy] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._tallies: dict[str, Tally] = {}

    def offer(
        self, target: ModelVersion, inputs: list[Tensor], served: Arrays, waiting: int
    ) -> None:
        """Queue a copy for ``target``; drop it when real requests are waiting (``waiting``
        for the version that served this one, or any for the target) or the mirror is full."""
        if self._queue is None:
            self._queue = asyncio.Queue(self._capacity)
            self._tasks = [
                asyncio.get_running_loop().create_task(self._work()) for _ in range(self._workers)
            ]
        batcher = target.batcher
        # Real requests waiting for the target come first: a copy never queues ahead of them.
        busy = waiting > 0 or batcher is None or batcher.queued > 0
        if busy or self._queue.full():
            self._count(target, "dropped")
            return
        self._queue.put_nowait(_Copy(target, inputs, served))

    def take(self, name: str) -> Tally:
        """The tally of ``name``'s mirrored rows since the last call (then reset)."""
        return self._tallies.pop(name, Tally())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            copy = await self._queue.get()
            try:
                outputs = await self._run(copy.target, copy.inputs)
            except SluiceError as exc:
                self._tallies.setdefault(copy.target.name, Tally()).failed += 1
                self._count(copy.target, "failed")
                log.debug("mirror to %s:%s failed: %s", copy.target.name, copy.target.version, exc)
                continue
            self._compare(copy.target, copy.served, outputs)

    async def _run(self, target: ModelVersion, inputs: list[Tensor]) -> Arrays:
        feed, rows, key = target.validate(inputs, ())
        if target.batcher is None or target.state != "READY":
            raise SluiceError("mirror target is not ready")
        lowest = target.config.batching.priority_levels
        return await target.batcher.submit(feed, rows, key, 0, lowest, None)

    def _compare(self, target: ModelVersion, served: Arrays, mirrored: Arrays) -> None:
        tally = self._tallies.setdefault(target.name, Tally())
        worst = 0.0
        disagree: np.ndarray | None = None
        for name, ours in served.items():
            theirs = mirrored.get(name)
            if theirs is None or theirs.shape != ours.shape or ours.dtype.kind not in "fiub":
                continue
            rows, rel, bad = _difference(ours, theirs)
            worst = max(worst, rel)
            disagree = bad if disagree is None else disagree | bad
        if disagree is None:  # nothing comparable: every row counts as disagreeing
            rows = next(iter(served.values())).shape[0] if served else 1
            disagree = np.ones(max(rows, 1), np.bool_)
            worst = float("inf")
        tally.rows += int(disagree.size)
        tally.disagreeing += int(np.count_nonzero(disagree))
        self._count(target, "compared")
        labels = (target.name, target.version)
        self._metrics.mirror_disagreement.labels(*labels).observe(worst)

    def _count(self, target: ModelVersion, result: str) -> None:
        self._metrics.mirror_requests.labels(target.name, target.version, result).inc()


def _difference(ours: np.ndarray, theirs: np.ndarray) -> tuple[int, float, np.ndarray]:
    """Rows, the largest relative difference, and which rows disagree."""
    a = ours.astype(np.float64, copy=False).reshape(ours.shape[0] if ours.ndim else 1, -1)
    b = theirs.astype(np.float64, copy=False).reshape(a.shape)
    diff = np.abs(a - b)
    rel = float(np.max(diff / np.maximum(np.abs(a), 1e-12))) if diff.size else 0.0
    if a.shape[1] > 1:
        bad = np.argmax(a, axis=1) != np.argmax(b, axis=1)
    else:
        bad = ~np.all(np.isclose(b, a, rtol=RTOL, atol=ATOL), axis=1)
    return a.shape[0], rel, bad
