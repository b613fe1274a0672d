"""One trial: a fresh server with one configuration, warmed up, measured until stable.

The load is ``sluice bench``'s engine (``server.bench.Bench``) at a fixed concurrency. The
first window warms up (ONNX Runtime's arena grows, thread pools spin up) and is discarded;
windows then run until two consecutive ones agree within ``agree`` (10 %), or ``max_windows``
ran (the trial is then marked unstable and the last two are averaged).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from server.bench import Bench, BenchConfig, Step, StepResult
from server.profiler.process import ServerProcess, TrialError
from server.profiler.space import Knobs
from server.profiler.toml import config_toml


@dataclass(frozen=True, slots=True)
class Load:
    """The traffic every trial gets."""

    rows: int = 1
    concurrency: int = 8
    window_s: float = 2.0
    agree: float = 0.10
    max_windows: int = 5
    sample: Path | None = None
    features: tuple[str, ...] | None = None
    binary: bool = True

    def bench_config(self, url: str, model: str) -> BenchConfig:
        return BenchConfig(
            url=url,
            model=model,
            binary=self.binary,
            steps=(Step(concurrency=self.concurrency),),
            duration_s=self.window_s,
            warmup_s=0.0,
            rows=self.rows,
            input_path=self.sample,
            features=self.features,
            processes=1,
        )


@dataclass(frozen=True, slots=True)
class Trial:
    """What one configuration measured. ``knobs`` is None for the server's own defaults."""

    index: int
    knobs: Knobs | None
    rows: int
    concurrency: int
    throughput: float  # requests per second
    rows_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    peak_rss_mb: float
    busy_cores: float
    windows: int
    stable: bool
    errors: int
    windows_rows_per_s: tuple[float, ...] = field(default=())

    @property
    def label(self) -> str:
        return self.knobs.label if self.knobs is not None else "server defaults"

    def to_dict(self) -> dict[str, Any]:
        knobs = self.knobs.to_dict() if self.knobs is not None else None
        return {
            "index": self.index,
            "label": self.label,
            "knobs": knobs,
            "rows": self.rows,
            "concurrency": self.concurrency,
            "throughput": self.throughput,
            "rows_per_s": self.rows_per_s,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "peak_rss_mb": self.peak_rss_mb,
            "busy_cores": self.busy_cores,
            "windows": self.windows,
            "stable": self.stable,
            "errors": self.errors,
            "windows_rows_per_s": list(self.windows_rows_per_s),
        }


def run_trial(
    model: Path,
    knobs: Knobs | None,
    load: Load,
    index: int = 0,
    cpus: frozenset[int] | None = None,
) -> Trial:
    """Start a server with ``knobs`` (None: no ``--config``) pinned to ``cpus`` (None: where
    this process may run), measure it, stop it."""
    name = model.stem
    with tempfile.TemporaryDirectory(prefix="sluice-profile-") as tmp:
        config = None
        if knobs is not None:
            config = Path(tmp) / "config.toml"
            config.write_text(config_toml(knobs))
        with ServerProcess(model, config, name, cpus) as server:
            windows, busy = measure(server.url, name, load, server.cpu_s)
            peak = server.peak_rss_mb()
    return summarise(index, knobs, load, windows, peak, busy)


def measure(
    url: str, name: str, load: Load, cpu_s: Callable[[], float] = lambda: 0.0
) -> tuple[list[StepResult], float]:
    """The warm-up window, then windows until two consecutive agree (or ``max_windows``);
    also the cores the server kept busy on average over the measured windows (``cpu_s``: the
    server's CPU seconds so far)."""
    with Bench(load.bench_config(url, name)) as bench:
        failed = [w for w in bench.warnings if "failed" in w or "wrong" in w]
        if failed:
            raise TrialError(failed[0])
        step = bench.config.steps[0]
        bench.run_step(step)  # warm-up, discarded
        cpu, start = cpu_s(), time.monotonic()
        windows = [bench.run_step(step)]
        while len(windows) < load.max_windows:
            windows.append(bench.run_step(step))
            if agree(windows[-2], windows[-1], load.agree):
                break
        busy = (cpu_s() - cpu) / (time.monotonic() - start)
    if windows[-1].requests == 0:
        kinds = windows[-1].error_messages
        raise TrialError(f"no request succeeded: {next(iter(kinds.values()), 'no answer')}")
    return windows, busy


def agree(a: StepResult, b: StepResult, tolerance: float) -> bool:
    high = max(a.throughput, b.throughput)
    return high > 0 and abs(a.throughput - b.throughput) <= tolerance * high


def summarise(
    index: int,
    knobs: Knobs | None,
    load: Load,
    windows: list[StepResult],
    peak: float,
    busy: float,
) -> Trial:
    last = windows[-2:]
    stable = len(windows) >= 2 and agree(last[0], last[-1], load.agree)

    def mean(get: Any) -> float:
        values = [float(get(w) or 0.0) for w in last]
        return sum(values) / len(values)

    latencies = np.concatenate([w.latencies_ns for w in last])
    p50, p95, p99 = np.percentile(latencies, (50, 95, 99)) / 1e6 if latencies.size else np.zeros(3)

    return Trial(
        index=index,
        knobs=knobs,
        rows=load.rows,
        concurrency=load.concurrency,
        throughput=mean(lambda w: w.throughput),
        rows_per_s=mean(lambda w: w.rows_per_s),
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        peak_rss_mb=peak,
        busy_cores=busy,
        windows=len(windows),
        stable=stable,
        errors=sum(w.errors for w in windows),
        windows_rows_per_s=tuple(w.rows_per_s for w in windows),
    )
