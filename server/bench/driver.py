"""One client process's load: a closed loop of connections, or an open-loop schedule.

Runs on one event loop. Every answer arrives in a connection's callback, which calls
``done``: the latency is recorded when the answer completes inside the measured window, and
the next request goes out from there (closed loop) or from the backlog (open loop). Latency is
measured from the request's intended send time, so an open loop that waits for a free
connection shows that wait instead of hiding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from time import monotonic_ns
from typing import Any

import numpy as np

from server.bench.check import check_answer
from server.bench.config import Step
from server.bench.http1 import Connection
from server.bench.target import Opener, Target

SAMPLE_EVERY = 1024  # answers kept to check their shapes: each connection's first, then 1 in N
MAX_SAMPLES = 32
RECONNECT_DELAY_S = 0.05
TIMER_S = 0.1


@dataclass(frozen=True, slots=True)
class Plan:
    """This process's part of one step; times on the machine-wide monotonic clock (ns)."""

    step: Step  # concurrency or rate already divided among the processes
    start_ns: int
    measure_ns: int
    end_ns: int
    seed: int


@dataclass(slots=True)
class Outcome:
    """What one process measured inside the window."""

    latencies_ns: np.ndarray
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    sent: int = 0
    lag_ns: np.ndarray | None = None  # open loop: how late the schedule was served
    backlog: int = 0  # open loop: requests still waiting for a connection at the end
    cpu_s: float = 0.0  # this process's CPU from the step's first request to its end
    wall_s: float = 0.0
    answers: int = 0  # every answer in that time, warm-up included
    connections: int = 0
    checked: int = 0


class Driver:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.opener = Opener(target)
        self.completed = 0  # every answer ever, for the progress line
        self._conns: set[Connection] = set()
        self._idle: list[Connection] = []
        self._backlog: deque[int] = deque()
        self._opening = 0
        self._tasks: set[asyncio.Future[None]] = set()

    async def run(self, plan: Plan) -> Outcome:
        self._plan = plan
        self._lat = array("q")
        self._lag = array("q")
        self._out = Outcome(np.empty(0, np.int64))
        self._samples: list[bytes] = []
        self._count = 0
        self._finished = asyncio.get_running_loop().create_future()
        self._open_loop = plan.step.request_rate is not None
        self._opened = 0
        self._cpu0 = (time.thread_time(), monotonic_ns(), self.completed)
        timers = asyncio.ensure_future(self._timers())
        try:
            if self._open_loop:
                await self._schedule(plan)
            else:
                await self._closed(plan)
            await asyncio.wait_for(asyncio.shield(self._finished), self._grace())
        except TimeoutError:
            pass
        finally:
            cpu, wall, answers = self._cpu0
            self._out.cpu_s = time.thread_time() - cpu
            self._out.wall_s = (monotonic_ns() - wall) / 1e9
            self._out.answers = self.completed - answers
            timers.cancel()
            for task in list(self._tasks):  # reconnections: none may join the next step
                task.cancel()
            for conn in list(self._conns):
                conn.busy = False
                conn.close()
            self._conns.clear()
            self._idle.clear()
        return self._result()

    def _grace(self) -> float:
        return min(self.target.config.timeout_s, 5.0) + 0.5

    # --- closed loop -----------------------------------------------------------------------
    async def _closed(self, plan: Plan) -> None:
        assert plan.step.concurrency is not None
        opened = await asyncio.gather(
            *(self._connect(i) for i in range(plan.step.concurrency)), return_exceptions=True
        )
        await _sleep_until(plan.start_ns)
        self._clock_in()
        now = monotonic_ns()
        for conn in opened:
            if isinstance(conn, BaseException):
                self._error("connection: " + str(conn), b"", now, always=True)
                self._spawn(self._replace())
            else:
                conn.keep = True
                conn.send(now)
        await _sleep_until(plan.end_ns)
        self._check_finished()

    # --- open loop -------------------------------------------------------------------------
    async def _schedule(self, plan: Plan) -> None:
        step = plan.step
        assert step.request_rate is not None
        gap = 1e9 / step.request_rate
        rng = np.random.default_rng(plan.seed)
        gaps = iter(())  # Poisson gaps drawn 4096 at a time
        for _ in range(min(4, self.target.config.max_connections)):
            self._grow()
        intended = float(plan.start_ns)
        await _sleep_until(plan.start_ns)
        self._clock_in()
        while intended < plan.end_ns:
            now = monotonic_ns()
            while intended <= now and intended < plan.end_ns:
                self._dispatch(int(intended), now)
                if step.poisson:
                    try:
                        intended += next(gaps)
                    except StopIteration:
                        gaps = iter(rng.exponential(gap, 4096).tolist())
                        intended += next(gaps)
                else:
                    intended += gap
            await asyncio.sleep(max(0.0, (intended - monotonic_ns()) / 1e9))
        self._out.backlog = len(self._backlog)
        self._backlog.clear()
        self._check_finished()

    def _dispatch(self, intended: int, now: int) -> None:
        if self._plan.measure_ns <= intended:
            self._out.sent += 1
            self._lag.append(now - intended)
        if self._idle:
            conn = self._idle.pop()
            conn.keep = self._sample()
            conn.send(intended)
            return
        self._backlog.append(intended)
        if len(self._conns) + self._opening < self.target.config.max_connections:
            self._grow()

    def _grow(self) -> None:
        self._spawn(self._replace())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- answers -----------------------------------------------------------------------
    def done(self, conn: Connection, ok: bool, kind: str, answer: bytes, end_ns: int) -> None:
        self.completed += 1
        plan = self._plan
        if plan.measure_ns <= end_ns < plan.end_ns:
            if ok:
                self._lat.append(end_ns - conn.start_ns)
            else:
                self._error(kind, answer, end_ns)
        if ok and answer and len(self._samples) < MAX_SAMPLES:
            self._samples.append(answer)  # checked after the step, off the clock
        self._next(conn, end_ns)

    def _next(self, conn: Connection, now: int) -> None:
        if now >= self._plan.end_ns:
            self._idle.append(conn)
            self._check_finished()
        elif self._open_loop:
            if self._backlog:
                conn.keep = self._sample()
                conn.send(self._backlog.popleft())
            else:
                self._idle.append(conn)
        else:
            conn.keep = self._sample()
            conn.send(now)

    def _sample(self) -> bool:
        self._count += 1
        return self._count % SAMPLE_EVERY == 0

    def lost(self, conn: Connection, reason: str) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        failed = conn.busy
        if failed:
            conn.busy = False
            self._error(reason, b"", monotonic_ns())
        if monotonic_ns() < self._plan.end_ns:
            # an idle connection the server closed (Connection: close) is replaced at once
            self._spawn(self._replace(RECONNECT_DELAY_S if failed else 0.0))
        self._check_finished()

    def _error(self, kind: str, answer: bytes, when: int, always: bool = False) -> None:
        """Count an error inside the window (``always``: a failure to connect at the start)."""
        if always or self._plan.measure_ns <= when < self._plan.end_ns:
            self._out.errors[kind] = self._out.errors.get(kind, 0) + 1
            if kind not in self._out.messages:
                self._out.messages[kind] = _text(answer)

    # --- connections ---------------------------------------------------------------------
    async def _connect(self, offset: int) -> Connection:
        self._opening += 1
        try:
            conn = await asyncio.wait_for(self.opener.open(self, offset), self._grace())
        finally:
            self._opening -= 1
        self._conns.add(conn)
        self._opened += 1
        return conn

    async def _replace(self, delay: float = 0.0) -> None:
        """A new connection, put to work at once (closed loop) or on the backlog (open)."""
        if delay:
            await asyncio.sleep(delay)
        try:
            conn = await self._connect(self._opened)
        except (OSError, TimeoutError, ConnectionError) as exc:
            self._error(f"connection: {exc or type(exc).__name__}", b"", monotonic_ns())
            if monotonic_ns() < self._plan.end_ns:
                self._spawn(self._replace(RECONNECT_DELAY_S))
            return
        conn.keep = True
        now = monotonic_ns()
        if now >= self._plan.end_ns:
            self._idle.append(conn)
        elif self._open_loop:
            self._next(conn, now)
        else:
            conn.send(now)

    def _check_finished(self) -> None:
        if monotonic_ns() < self._plan.end_ns or self._finished.done():
            return
        if not any(conn.busy for conn in self._conns):
            self._finished.set_result(None)

    async def _timers(self) -> None:
        """Requests past their timeout fail, every 100 ms."""
        timeout_ns = int(self.target.config.timeout_s * 1e9)
        while True:
            await asyncio.sleep(TIMER_S)
            now = monotonic_ns()
            for conn in [c for c in self._conns if c.busy and now - c.start_ns > timeout_ns]:
                conn.busy = False
                self._error("timeout", b"", now)
                self._conns.discard(conn)
                conn.close()
                if now < self._plan.end_ns:
                    self._spawn(self._replace())
            self._check_finished()

    def _clock_in(self) -> None:
        """The client's CPU is measured from the first request to the last answer."""
        self._cpu0 = (time.thread_time(), monotonic_ns(), self.completed)

    def _result(self) -> Outcome:
        out = self._out
        out.latencies_ns = np.frombuffer(self._lat, dtype=np.int64).copy()
        out.ok = len(out.latencies_ns)
        if self._open_loop:
            out.lag_ns = np.frombuffer(self._lag, dtype=np.int64).copy()
        out.connections = self._opened
        for answer in self._samples:
            problem = check_answer(self.target, answer)
            out.checked += 1
            if problem:
                out.errors["bad answer"] = out.errors.get("bad answer", 0) + 1
                out.messages.setdefault("bad answer", problem)
        return out


async def _sleep_until(when_ns: int) -> None:
    delay = (when_ns - monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


def _text(answer: bytes) -> str:
    return answer[-300:].decode("utf-8", "replace").strip()
