"""The load generator as a Python object: prepare once, then run steps.

    with Bench(BenchConfig(url="127.0.0.1:8000", model="mlp")) as bench:
        result = bench.run_step(Step(concurrency=16))

``sluice bench`` and the profiler both drive this. Preparing reads the model's metadata,
encodes every payload, sends one request and checks its answer, and starts the client
processes, all before any clock starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from time import monotonic_ns
from typing import Any

from server.bench.check import check_answer
from server.bench.config import BenchConfig, Step
from server.bench.control import check_metadata, open_control
from server.bench.driver import Plan
from server.bench.model import expected_outputs, model_info, resolve_shapes
from server.bench.payloads import build
from server.bench.results import StepResult, merge
from server.bench.target import Target
from server.bench.workers import Worker, start_workers

START_DELAY_S = 0.3  # from handing out a step to its first request: connections open meanwhile
PROGRESS_S = 0.5

Progress = Callable[[str], None]


class Bench:
    def __init__(self, config: BenchConfig, progress: Progress | None = None) -> None:
        self.config = config
        self.progress = progress
        self.warnings: list[str] = []
        self.control = open_control(config)
        self.workers: list[Worker] = []
        try:
            metadata, warning = check_metadata(self.control, config)
            if warning:
                self.warnings.append(warning)
            self.info = model_info(metadata, config.version)
            shapes = resolve_shapes(self.info, config.rows, config.shapes)
            first = shapes[self.info.inputs[0].name]
            self.rows = first[0] if self.info.batched and first else 1
            payloads = build(config, self.info, shapes)
            self.target = Target(config, tuple(payloads), expected_outputs(self.info, self.rows))
            self._preflight()
            self.workers = start_workers(self.target, config.process_count)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []
        self.control.close()

    @property
    def wire(self) -> str:
        if self.config.protocol == "grpc":
            return "stream" if self.config.streaming else "unary"
        return "binary" if self.config.binary else "json"

    def _preflight(self) -> None:
        """One request through the control client: a rejection is reported, not fatal."""
        payload = self.target.payloads[0]
        error, answer = self.control.infer(payload.body, dict(payload.headers))
        if error:
            self.warnings.append(f"the first request failed: {error}")
            return
        unary = replace(self.target, config=replace(self.config, streaming=False))
        problem = check_answer(unary, answer)
        if problem:
            self.warnings.append(f"the first answer is wrong: {problem}")

    def run(self) -> list[StepResult]:
        return [self.run_step(step) for step in self.config.steps]

    def run_step(self, step: Step) -> StepResult:
        c = self.config
        plans = self._plans(step)
        for worker, plan in zip(self.workers, plans, strict=False):
            worker.start(plan)
        measure, end = plans[0].measure_ns, plans[0].end_ns
        self._wait(step, measure, end, warmup=True)
        before = self.control.counters()
        self._wait(step, end, end, warmup=False)
        after = self.control.counters()
        grace = c.timeout_s + 30
        outcomes = [w.result(grace) for w in self.workers[: len(plans)]]
        server = after.minus(before) if after is not None and before is not None else None
        return merge(
            outcomes,
            step,
            protocol=c.protocol,
            wire=self.wire,
            duration_s=c.duration_s,
            rows=self.rows,
            server=server,
        )

    def _plans(self, step: Step) -> list[Plan]:
        c = self.config
        count = len(self.workers)
        if step.concurrency is not None:
            shares: list[Any] = [
                step.concurrency // count + (i < step.concurrency % count) for i in range(count)
            ]
            steps = [Step(concurrency=n) for n in shares if n]
        else:
            assert step.request_rate is not None
            steps = [Step(request_rate=step.request_rate / count, poisson=step.poisson)] * count
        start = monotonic_ns() + int(START_DELAY_S * 1e9)
        measure = start + int(c.warmup_s * 1e9)
        end = measure + int(c.duration_s * 1e9)
        return [Plan(s, start, measure, end, c.seed + 7919 * i) for i, s in enumerate(steps)]

    def _wait(self, step: Step, until_ns: int, end_ns: int, *, warmup: bool) -> None:
        while (left := until_ns - monotonic_ns()) > 0:
            time.sleep(min(left / 1e9, PROGRESS_S))
            if self.progress is not None:
                done = sum(w.progress() for w in self.workers)
                seconds = max(0.0, (end_ns - monotonic_ns()) / 1e9)
                phase = "warm-up" if warmup else f"{seconds:4.0f} s left"
                self.progress(f"{step.label}: {phase}, {done:,} answers")


def run_step(config: BenchConfig, step: Step | None = None) -> StepResult:
    """Prepare, run one step (the config's first when not given), and clean up."""
    with Bench(config) as bench:
        return bench.run_step(step or config.steps[0])
