"""The dynamic batcher with a controllable runner in place of ONNX Runtime."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from server.engine.batcher import Arrays, Batcher
from server.engine.stats import Stats
from server.errors import DeadlineExceeded, InvalidInput, ModelFailed, Overloaded
from server.metrics import Metrics
from server.settings import BatchingConfig


class Runner:
    """Doubles its input; records each batch's rows; can be held closed or made to fail."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on: set[int] = set()

    def __call__(self, feed: Mapping[str, np.ndarray]) -> Arrays:
        self.gate.wait(10)
        x = feed["x"]
        self.batches.append(x.shape[0])
        if int(x[0, 0]) in self.fail_on:
            raise ModelFailed("boom")
        return {"y": x * 2}


def make(runner: Runner, instances: int = 1, **config: object) -> Batcher:
    from concurrent.futures import ThreadPoolExecutor

    metrics = Metrics(CollectorRegistry()).model("m", "1")
    return Batcher(
        "m",
        runner,
        BatchingConfig(**config),
        instances,
        ThreadPoolExecutor(instances),  # type: ignore[arg-type]
        metrics,
        Stats(),
    )


def rows(value: float, n: int = 1, width: int = 2) -> Arrays:
    return {"x": np.full((n, width), value, np.float32)}


def submit(
    b: Batcher, value: float, n: int = 1, width: int = 2, **kw: int
) -> asyncio.Future[Arrays]:
    return b.submit(rows(value, n, width), n, (("x", (width,)),), **kw)


async def test_concurrent_requests_batch_and_get_their_own_rows() -> None:
    runner = Runner()
    runner.gate.clear()
    b = make(runner)
    first = submit(b, 100)
    await asyncio.sleep(0.01)  # first batch is running, held at the gate
    futures = [submit(b, i, n=1 + i % 3) for i in range(20)]
    runner.gate.set()
    results = await asyncio.gather(first, *futures)
    for i, result in enumerate(results[1:]):
        np.testing.assert_array_equal(result["y"], np.full((1 + i % 3, 2), 2 * i))
    assert runner.batches[0] == 1 and sum(runner.batches[1:]) == sum(1 + i % 3 for i in range(20))
    assert len(runner.batches) <= 3 and max(runner.batches) <= 64


async def test_max_batch_size_counts_rows_not_requests() -> None:
    runner = Runner()
    runner.gate.clear()
    b = make(runner, max_batch_size=8)
    blocker = submit(b, 0)
    await asyncio.sleep(0.01)
    futures = [submit(b, 1, n=3) for _ in range(6)]
    runner.gate.set()
    await asyncio.gather(blocker, *futures)
    assert runner.batches[1:] == [6, 6, 6]


async def test_preferred_batch_sizes_are_honoured() -> None:
    runner = Runner()
    runner.gate.clear()
    b = make(runner, max_batch_size=16, preferred_batch_sizes=(4, 8))
    blocker = submit(b, 0)
    await asyncio.sleep(0.01)
    futures = [submit(b, 1) for _ in range(13)]
    runner.gate.set()
    await asyncio.gather(blocker, *futures)
    assert runner.batches[1:] == [8, 4, 1]


async def test_queue_delay_waits_for_more_rows() -> None:
    runner = Runner()
    b = make(runner, max_batch_size=4, max_queue_delay_us=200_000)
    futures = [submit(b, 1)]
    await asyncio.sleep(0.02)
    futures += [submit(b, 1) for _ in range(3)]  # reaches max_batch_size: leaves at once
    await asyncio.wait_for(asyncio.gather(*futures), 0.15)
    assert runner.batches == [4]


async def test_different_shapes_go_in_separate_batches() -> None:
    runner = Runner()
    runner.gate.clear()
    b = make(runner)
    blocker = submit(b, 0)
    await asyncio.sleep(0.01)
    narrow = [submit(b, 1, width=2) for _ in range(3)]
    wide = [submit(b, 2, width=5) for _ in range(2)]
    runner.gate.set()
    results = await asyncio.gather(blocker, *narrow, *wide)
    assert sorted(runner.batches[1:]) == [2, 3]
    assert results[-1]["y"].shape == (1, 5)


async def test_full_queue_is_refused() -> None:
    runner = Runner()
    runner.gate.clear()
    b = make(runner, max_queue_size=2)
    running = submit(b, 0)
    await asyncio.sleep(0.01)
    queued = [submit(b, 1), submit(b, 2)]
    with pytest.raises(Overloaded, match="queue is full"):
        submit(b, 3)
    runner.gate.set()
    await asyncio.gather(running, *queued)


async def test_timeout_expires_without_running() -> None:
    runner = Runner()
    runner.gate.clear()
    b = make(runner)
    running = submit(b, 0)
    await asyncio.sleep(0.01)
    late = submit(b, 7, timeout_us=1000)
    with pytest.raises(DeadlineExceeded):
        await late
    runner.gate.set()
    await running
    await asyncio.sleep(0.01)
    assert runner.batches == [1]  # the expired request never ran


async def test_default_timeout_applies() -> None:
    runner = Runner()
    runner.gate.clear()
    b = make(runner, default_timeout_ms=1)
    running = submit(b, 0)
    await asyncio.sleep(0.01)
    with pytest.raises(DeadlineExceeded):
        await submit(b, 1)
    runner.gate.set()
    await running


async def test_higher_priority_runs_first() -> None:
    seen: list[int] = []
    runner = Runner()
    runner.gate.clear()
    inner = runner.__call__

    def record(feed: Mapping[str, np.ndarray]) -> Arrays:
        out = inner(feed)
        seen.append(int(feed["x"][0, 0]))
        return out

    from concurrent.futures import ThreadPoolExecutor

    b = Batcher(
        "m",
        record,
        BatchingConfig(priority_levels=2, default_priority=2, max_batch_size=1),
        1,
        ThreadPoolExecutor(1),
        Metrics(CollectorRegistry()).model("m", "1"),
        Stats(),
    )
    blocker = submit(b, 0)
    await asyncio.sleep(0.01)
    others = [submit(b, 5), submit(b, 9, priority=1)]
    runner.gate.set()
    await asyncio.gather(blocker, *others)
    assert seen == [0, 9, 5]
    with pytest.raises(InvalidInput, match="priority 3"):
        submit(b, 1, priority=3)


async def test_cancelled_request_is_dropped_before_running() -> None:
    runner = Runner()
    runner.gate.clear()
    b = make(runner)
    running = submit(b, 0)
    await asyncio.sleep(0.01)
    gone = submit(b, 3)
    gone.cancel()  # the client went away
    kept = submit(b, 4)
    runner.gate.set()
    await asyncio.gather(running, kept)
    assert runner.batches == [1, 1]


async def test_a_failing_batch_fails_only_its_own_requests() -> None:
    runner = Runner()
    runner.gate.clear()
    runner.fail_on = {13}
    b = make(runner, instances=1, max_batch_size=2)
    blocker = submit(b, 0)
    await asyncio.sleep(0.01)
    doomed = [submit(b, 13), submit(b, 13)]
    fine = [submit(b, 1), submit(b, 1)]
    runner.gate.set()
    results = await asyncio.gather(*doomed, *fine, return_exceptions=True)
    await blocker
    assert all(isinstance(r, ModelFailed) and "boom" in r.message for r in results[:2])
    assert all(isinstance(r, dict) for r in results[2:])


async def test_too_many_rows_is_refused_and_close_drains() -> None:
    runner = Runner()
    b = make(runner, max_batch_size=4)
    with pytest.raises(InvalidInput, match="max_batch_size"):
        submit(b, 1, n=5)
    pending = submit(b, 1)
    b.close()
    assert await b.drain(5)
    assert (await pending)["y"].shape == (1, 2)
