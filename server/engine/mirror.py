"""Shadow traffic: a copy of a served request runs on the mirror version after the answer
has gone, its outputs are compared with the served ones, and then discarded.

Off the request path by construction: ``offer`` only appends to a bounded queue (dropped and
counted when it is full or real requests wait for the serving version, so under load
mirroring is what goes first). One worker task waits ``GATHER_S`` after a copy arrives, takes
every copy queued by then and joins those for the same target into one model call, whose
rows are split back so each copy is compared with its own answer. The calls run one at a time
on the mirror's own thread at the operating system's idle priority, so they use only CPU time
that serving leaves; while one runs, copies queue and the next call takes them, and when the
queue is full they are dropped and counted. Copied one by one through the target's batcher,
20% mirroring cost 47% of the throughput of the reference MLP at saturation; joined, 17-20%;
joined on the idle thread, 6-12% (benchmarks/results/rollout-*). A copy never fails or delays
the request it copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from server.errors import ModelFailed, SluiceError
from server.metrics import Metrics
from server.tensors import Tensor

from .batcher import Arrays
from .models import ModelVersion

log = logging.getLogger(__name__)

# Copies wait this long for others before running: 20% of ~3,500 req/s per worker is ~14
# copies per 20 ms, one model call instead of fourteen.
GATHER_S = 0.02
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


@dataclass(slots=True)
class _Group:
    """Copies for one target that run as one request: their checked feeds and rows."""

    target: ModelVersion
    key: Hashable
    copies: list[_Copy] = field(default_factory=list)
    feeds: list[Arrays] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    total: int = 0

    def add(self, copy: _Copy, feed: Arrays, rows: int) -> None:
        self.copies.append(copy)
        self.feeds.append(feed)
        self.rows.append(rows)
        self.total += rows


class Mirror:
    def __init__(self, metrics: Metrics, capacity: int = 64) -> None:
        self._metrics = metrics
        self._capacity = capacity
        self._queue: asyncio.Queue[_Copy] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._tallies: dict[str, Tally] = {}
        self.calls = 0  # model calls made (each runs one group of joined copies)

    def offer(
        self, target: ModelVersion, inputs: list[Tensor], served: Arrays, waiting: int
    ) -> None:
        """Queue a copy for ``target``; drop it when real requests are waiting (``waiting``
        for the version that served this one, or any for the target) or the mirror is full."""
        if self._queue is None:
            self._queue = asyncio.Queue(self._capacity)
            self._executor = ThreadPoolExecutor(
                1, thread_name_prefix="sluice-mirror", initializer=_idle_priority
            )
            self._tasks = [asyncio.get_running_loop().create_task(self._work())]
        if waiting > 0 or self._queue.full():
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
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._queue, self._executor = None, None  # a later offer starts afresh

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            copies = [await self._queue.get()]
            await asyncio.sleep(GATHER_S)  # let copies gather: they run as one model call
            while not self._queue.empty():
                copies.append(self._queue.get_nowait())
            for group in self._groups(copies):  # one at a time: the mirror has one thread
                await self._run(group)

    def _groups(self, copies: list[_Copy]) -> list[_Group]:
        """The admitted copies, checked and joined where they can run as one request: same
        target, same non-batch shapes, at most the target's ``max_batch_size`` rows."""
        groups: dict[tuple[int, Hashable], list[_Group]] = {}
        for copy in self._admit(copies):
            target = copy.target
            try:
                feed, rows, key = target.validate(copy.inputs, ())
            except SluiceError as exc:
                self._failed(target, exc)
                continue
            batching = target.config.batching
            limit = batching.max_batch_size if target.batching else 1
            chunks = groups.setdefault((id(target), key), [])
            if not chunks or chunks[-1].total + rows > limit:
                chunks.append(_Group(target, key))
            chunks[-1].add(copy, feed, rows)
        return [group for chunks in groups.values() for group in chunks]

    async def _run(self, group: _Group) -> None:
        """One model call for the group; each copy's rows are compared with its answer."""
        target = group.target
        feeds = group.feeds
        joined = (
            feeds[0]
            if len(feeds) == 1
            else {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}
        )
        self.calls += 1
        try:
            assert self._executor is not None
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._executor, target.session.run, joined)
        except Exception as exc:
            failure = exc if isinstance(exc, SluiceError) else ModelFailed(str(exc))
            if len(feeds) == 1:
                self._failed(target, failure)
                return
            for copy, feed, rows in zip(group.copies, feeds, group.rows, strict=True):
                alone = _Group(target, group.key)  # so only the copy that fails counts
                alone.add(copy, feed, rows)
                await self._run(alone)
            return
        if len(feeds) == 1:
            self._compare(target, group.copies[0].served, outputs)
        elif not self._compare_joined(group, outputs):
            end = 0
            for copy, rows in zip(group.copies, group.rows, strict=True):
                end += rows
                mine = {name: value[end - rows : end] for name, value in outputs.items()}
                self._compare(target, copy.served, mine)

    def _failed(self, target: ModelVersion, exc: SluiceError) -> None:
        self._tallies.setdefault(target.name, Tally()).failed += 1
        self._count(target, "failed")
        log.debug("mirror to %s:%s failed: %s", target.name, target.version, exc)

    def _admit(self, copies: list[_Copy]) -> list[_Copy]:
        """The copies to run now: none for a target with real requests waiting."""
        admitted = []
        for copy in copies:
            batcher = copy.target.batcher
            if batcher is None or batcher.queued > 0 or copy.target.state != "READY":
                self._count(copy.target, "dropped")
            else:
                admitted.append(copy)
        return admitted

    def _compare_joined(self, group: _Group, mirrored: Arrays) -> bool:
        """Compare every copy of the group in one pass over the joined rows; False (nothing
        counted) when the copies' answers do not line up with them."""
        first = group.copies[0].served
        if not first or 0 in group.rows:
            return False
        worst: np.ndarray | None = None
        disagree: np.ndarray | None = None
        for name, ours in first.items():
            theirs = mirrored.get(name)
            if ours.ndim == 0:
                return False
            if theirs is None or ours.dtype.kind not in "fiub":
                continue
            served = [copy.served.get(name, _MISSING) for copy in group.copies]
            if any(
                s.shape != (rows, *ours.shape[1:]) or s.dtype != ours.dtype
                for s, rows in zip(served, group.rows, strict=True)
            ):
                return False
            joined = np.concatenate(served)
            if joined.shape != theirs.shape:
                return False
            rel, bad = _row_difference(joined, theirs)
            worst = rel if worst is None else np.maximum(worst, rel)
            disagree = bad if disagree is None else disagree | bad
        if worst is None or disagree is None:
            return False
        starts = np.cumsum([0, *group.rows[:-1]])
        per_copy = np.maximum.reduceat(worst, starts)
        target = group.target
        tally = self._tallies.setdefault(target.name, Tally())
        tally.rows += int(disagree.size)
        tally.disagreeing += int(np.count_nonzero(disagree))
        labels = (target.name, target.version)
        self._metrics.mirror_requests.labels(*labels, "compared").inc(len(group.copies))
        histogram = self._metrics.mirror_disagreement.labels(*labels)
        for value in per_copy.tolist():
            histogram.observe(value)
        return True

    def _compare(self, target: ModelVersion, served: Arrays, mirrored: Arrays) -> None:
        tally = self._tallies.setdefault(target.name, Tally())
        worst = 0.0
        disagree: np.ndarray | None = None
        for name, ours in served.items():
            theirs = mirrored.get(name)
            if theirs is None or theirs.shape != ours.shape or ours.dtype.kind not in "fiub":
                continue
            rel, bad = _row_difference(ours, theirs)
            worst = max(worst, float(rel.max()) if rel.size else 0.0)
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


_MISSING = np.empty(())  # an output a copy's answer lacks: matches no shape


def _idle_priority() -> None:
    """Run the calling thread (the mirror's) only on CPU time nothing else wants: Linux's
    SCHED_IDLE, else the lowest nice value; left as it is where neither is allowed."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 19)


def _row_difference(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the largest relative difference, and whether the row disagrees."""
    a = ours.astype(np.float64, copy=False).reshape(ours.shape[0] if ours.ndim else 1, -1)
    b = theirs.astype(np.float64, copy=False).reshape(a.shape)
    diff = np.abs(a - b)
    if a.shape[1]:
        rel = np.max(diff / np.maximum(np.abs(a), 1e-12), axis=1)
    else:
        rel = np.zeros(a.shape[0])
    if a.shape[1] > 1:
        bad = np.argmax(a, axis=1) != np.argmax(b, axis=1)
    else:
        bad = ~np.all(np.isclose(b, a, rtol=RTOL, atol=ATOL), axis=1)
    return rel, bad
