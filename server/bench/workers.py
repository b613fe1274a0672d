"""The client processes: each runs a ``Driver`` on its own uvloop event loop.

One process runs its driver on a thread of the calling process (no start-up cost, and a test
can see it); more are spawned once per run and given each step's ``Plan`` over a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection as Pipe
from typing import Any, Protocol

from server.bench.driver import Driver, Outcome, Plan
from server.bench.target import Target

PROGRESS_S = 0.2


class Worker(Protocol):
    def start(self, plan: Plan) -> None: ...
    def result(self, timeout: float) -> Outcome: ...
    def progress(self) -> int: ...
    def close(self) -> None: ...


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class ThreadWorker:
    def __init__(self, target: Target) -> None:
        self._loop = new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench", daemon=True)
        self._thread.start()
        self._driver = self._call(_make_driver, target)
        self._future: Any = None

    def _call(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(60)

    def start(self, plan: Plan) -> None:
        self._future = asyncio.run_coroutine_threadsafe(self._driver.run(plan), self._loop)

    def result(self, timeout: float) -> Outcome:
        outcome: Outcome = self._future.result(timeout)
        return outcome

    def progress(self) -> int:
        return int(self._driver.completed)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


async def _make_driver(target: Target) -> Driver:
    return Driver(target)  # built on its loop: connections and futures belong to it


class ProcessWorker:
    def __init__(self, target: Target) -> None:
        context = mp.get_context("spawn")  # no fork of a process that may hold threads
        self._pipe, child = context.Pipe()
        self._count = context.RawValue("q", 0)
        self._process = context.Process(
            target=_process_main, args=(target, child, self._count), daemon=True
        )
        self._process.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._pipe.poll(0.1):
            if not self._process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"a client process did not start ({self._process.exitcode})")
        answer = self._pipe.recv()
        if isinstance(answer, BaseException):
            raise answer

    def start(self, plan: Plan) -> None:
        self._pipe.send(plan)

    def result(self, timeout: float) -> Outcome:
        if not self._pipe.poll(timeout):
            raise RuntimeError("a client process did not finish its step")
        answer = self._pipe.recv()
        if isinstance(answer, BaseException):
            raise answer
        outcome: Outcome = answer
        return outcome

    def progress(self) -> int:
        return int(self._count.value)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._pipe.send(None)
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()


def _process_main(target: Target, pipe: Pipe, count: Any) -> None:
    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        driver = loop.run_until_complete(_make_driver(target))
    except Exception as exc:  # handed to the coordinator, which raises it
        pipe.send(exc)
        return

    async def report() -> None:
        while True:
            count.value = driver.completed
            await asyncio.sleep(PROGRESS_S)

    reporter = loop.create_task(report())
    pipe.send("ready")
    while True:
        plan = pipe.recv()
        if plan is None:
            break
        try:
            pipe.send(loop.run_until_complete(driver.run(plan)))
        except Exception as exc:  # handed to the coordinator, which raises it
            pipe.send(exc)
    reporter.cancel()
    loop.close()


def start_workers(target: Target, count: int) -> list[Worker]:
    if count == 1:
        return [ThreadWorker(target)]
    workers = [ProcessWorker(target) for _ in range(count)]
    for w in workers:
        w.wait_ready(120)
    return list(workers)
