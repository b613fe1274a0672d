"""The dynamic batcher of one model version.

Requests queue by priority; whenever an instance is free the batcher takes the oldest
request of the highest priority and adds queued requests with the same non-batch shape
until ``max_batch_size`` rows (or the best preferred size) are reached. With
``max_queue_delay_us = 0`` a batch leaves as soon as an instance is free, so an idle model
adds no delay and a busy one batches whatever queued while it ran. Everything here runs on
the event loop thread except ``_execute``, which runs in the instance thread pool.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from server.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelFailed,
    ModelNotReady,
    Overloaded,
    SluiceError,
)
from server.metrics import ModelMetrics
from server.settings import BatchingConfig

from .stats import Stats

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
Runner = Callable[[Mapping[str, np.ndarray]], Arrays]


@dataclass(slots=True, eq=False)
class Pending:
    """One queued request; its future resolves to this request's rows of each output."""

    inputs: Arrays
    rows: int
    key: Hashable
    future: asyncio.Future[Arrays]
    enqueued_ns: int
    timer: asyncio.TimerHandle | None = None
    gone: Callable[[], bool] | None = None

    def abandoned(self) -> bool:
        """Timed out, cancelled, or its client went away: it must not run."""
        if self.future.done():
            return True
        if self.gone is not None and self.gone():
            self.future.cancel()
            return True
        return False


@dataclass(slots=True)
class _Result:
    outputs: Arrays
    io_ns: int
    infer_ns: int


class Batcher:
    """Queue, batch and run requests for one model version on ``instances`` threads."""

    def __init__(
        self,
        name: str,
        runner: Runner,
        config: BatchingConfig,
        instances: int,
        executor: Executor,
        metrics: ModelMetrics,
        stats: Stats,
    ) -> None:
        self.name = name
        self._run = runner
        self._config = config
        self._batching = config.enabled
        self._max_rows = config.max_batch_size if config.enabled else 0
        self._delay_ns = config.max_queue_delay_us * 1000
        self._preferred = sorted(config.preferred_batch_sizes)
        self._queues: list[collections.deque[Pending]] = [
            collections.deque() for _ in range(config.priority_levels)
        ]
        self._size = 0
        self._rows = 0
        self._free = instances
        self._instances = instances
        self._executor = executor
        self._metrics = metrics
        self._stats = stats
        self._closed = False
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()

    @property
    def queued(self) -> int:
        return self._size

    @property
    def running(self) -> int:
        """Batches executing right now."""
        return self._instances - self._free

    def submit(
        self,
        inputs: Arrays,
        rows: int,
        key: Hashable,
        timeout_us: int = 0,
        priority: int = 0,
        gone: Callable[[], bool] | None = None,
    ) -> asyncio.Future[Arrays]:
        """Queue a request; the future fails with the real reason if it cannot run."""
        if self._closed:
            raise ModelNotReady(f"model '{self.name}' is unloading and accepts no new requests")
        if self._size >= self._config.max_queue_size:
            raise Overloaded(
                f"model '{self.name}': queue is full ({self._config.max_queue_size} requests)"
            )
        if self._batching and rows > self._max_rows:
            raise InvalidInput(
                f"model '{self.name}': request has {rows} rows, more than max_batch_size "
                f"({self._max_rows})"
            )
        level = priority or self._config.default_priority
        if not 1 <= level <= len(self._queues):
            raise InvalidInput(
                f"model '{self.name}': priority {priority} is not within 1..{len(self._queues)}"
            )
        future: asyncio.Future[Arrays] = self._loop.create_future()
        item = Pending(inputs, rows, key, future, time.monotonic_ns(), gone=gone)
        timeout_us = timeout_us or self._config.default_timeout_ms * 1000
        if timeout_us > 0:
            item.timer = self._loop.call_later(timeout_us / 1e6, self._expire, item, timeout_us)
        self._queues[level - 1].append(item)
        self._size += 1
        self._rows += rows
        self._idle.clear()
        self._metrics.queue_depth.set(self._size)
        if not self._scheduled:
            # Defer to the end of this loop iteration so requests read together batch together.
            self._scheduled = True
            self._loop.call_soon(self._dispatch)
        return future

    def close(self) -> None:
        """Stop accepting; queued and running requests still finish."""
        self._closed = True

    async def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or running. False if ``timeout_s`` ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _expire(self, item: Pending, timeout_us: int) -> None:
        item.timer = None
        if not item.future.done():
            item.future.set_exception(
                DeadlineExceeded(
                    f"model '{self.name}': request timed out after {timeout_us / 1000:g} ms "
                    "in the queue"
                )
            )

    # -- scheduling (event loop thread) ------------------------------------------------------

    def _dispatch(self) -> None:
        self._scheduled = False
        while self._free > 0 and self._size > 0:
            if self._delay_ns and not self._ready():
                return
            batch = self._take()
            if not batch:
                continue
            self._free -= 1
            self._launch(batch)
        self._check_idle()

    def _ready(self) -> bool:
        """With a queue delay: is it time to send a batch?"""
        if self._rows >= self._max_rows or (self._preferred and self._rows >= self._preferred[-1]):
            return True
        head = self._head()
        if head is None:
            return True
        wait_ns = head.enqueued_ns + self._delay_ns - time.monotonic_ns()
        if wait_ns <= 0:
            return True
        if self._timer is None:
            self._timer = self._loop.call_later(wait_ns / 1e9, self._delay_expired)
        return False

    def _delay_expired(self) -> None:
        self._timer = None
        self._dispatch()

    def _head(self) -> Pending | None:
        for queue in self._queues:
            while queue and queue[0].abandoned():
                self._drop(queue.popleft())
            if queue:
                return queue[0]
        return None

    def _drop(self, item: Pending) -> None:
        self._size -= 1
        self._rows -= item.rows

    def _limit(self, key: Hashable) -> int:
        """Rows to take for ``key``: max_batch_size, or the largest preferred size available."""
        if not self._preferred:
            return self._max_rows
        available = sum(
            i.rows for q in self._queues for i in q if i.key == key and not i.abandoned()
        )
        fitting = [p for p in self._preferred if p <= available]
        return fitting[-1] if fitting else min(available, self._max_rows)

    def _take(self) -> list[Pending]:
        head = self._head()
        if head is None:
            return []
        limit = self._limit(head.key) if self._batching else 0
        batch: list[Pending] = []
        rows = 0
        now = time.monotonic_ns()
        for queue in self._queues:
            kept: list[Pending] = []
            while queue:
                item = queue[0]
                if item.abandoned():
                    self._drop(queue.popleft())
                    continue
                if item.key != head.key:
                    kept.append(queue.popleft())
                    continue
                if batch and (not self._batching or rows + item.rows > limit):
                    break
                queue.popleft()
                self._drop(item)
                if item.timer is not None:
                    item.timer.cancel()
                    item.timer = None
                batch.append(item)
                rows += item.rows
                self._stats.queue.add(now - item.enqueued_ns)
                self._metrics.queue_us.observe((now - item.enqueued_ns) / 1000)
            queue.extendleft(reversed(kept))
            if batch and (not self._batching or rows >= limit):
                break
        self._metrics.queue_depth.set(self._size)
        return batch

    def _launch(self, batch: list[Pending]) -> None:
        inputs = [item.inputs for item in batch]
        running = self._loop.run_in_executor(self._executor, self._execute, inputs)
        running.add_done_callback(lambda done: self._finished(batch, done))

    # -- execution (instance thread) ---------------------------------------------------------

    def _execute(self, inputs: list[Arrays]) -> _Result:
        start = time.perf_counter_ns()
        if len(inputs) == 1:
            feed = inputs[0]
        else:
            feed = {name: np.concatenate([i[name] for i in inputs]) for name in inputs[0]}
        ready = time.perf_counter_ns()
        outputs = self._run(feed)
        return _Result(outputs, ready - start, time.perf_counter_ns() - ready)

    # -- completion (event loop thread) ------------------------------------------------------

    def _finished(self, batch: list[Pending], done: asyncio.Future[_Result]) -> None:
        self._free += 1
        try:
            result = done.result()
        except SluiceError as exc:
            log.warning("model '%s': batch of %d request(s) failed: %s", self.name, len(batch), exc)
            self._fail(batch, exc)
        except Exception as exc:
            log.exception("model '%s': batch failed", self.name)
            self._fail(batch, ModelFailed(f"model '{self.name}' failed: {exc}"))
        else:
            self._deliver(batch, result)
        if self._size and not self._scheduled:
            self._dispatch()
        self._check_idle()

    def _deliver(self, batch: list[Pending], result: _Result) -> None:
        rows = sum(item.rows for item in batch)
        if len(batch) > 1:
            wrong = [k for k, v in result.outputs.items() if v.ndim == 0 or v.shape[0] != rows]
            if wrong:
                self._fail(
                    batch,
                    ModelFailed(
                        f"model '{self.name}': output '{wrong[0]}' does not have the batch's "
                        f"{rows} rows, so it cannot be split between requests"
                    ),
                )
                return
        self._stats.record_batch(rows, len(batch), result.infer_ns, result.io_ns)
        self._metrics.compute_us.observe(result.infer_ns / 1000)
        self._metrics.batch_rows.observe(rows)
        if len(batch) == 1:
            item = batch[0]
            if not item.future.done():
                item.future.set_result(result.outputs)
            return
        start = 0
        for item in batch:
            stop = start + item.rows
            if not item.future.done():
                item.future.set_result({k: v[start:stop] for k, v in result.outputs.items()})
            start = stop

    def _fail(self, batch: list[Pending], exc: SluiceError) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)

    def _check_idle(self) -> None:
        if self._size == 0 and self._free == self._instances:
            self._idle.set()
