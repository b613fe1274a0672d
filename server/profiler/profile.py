"""One ``sluice profile`` run: validate, search, choose, recommend, write."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.errors import ConfigError, SluiceError
from server.profiler.objective import Choice, Objective, Recommendation, choose, recommend
from server.profiler.process import TrialError
from server.profiler.search import Progress, Search
from server.profiler.space import Knobs, Space, default_space
from server.profiler.toml import config_toml
from server.profiler.trial import Load, Trial, run_trial


class ProfileError(SluiceError):
    """The profile could not run: the model, the sample or a trial failed; said why."""


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    model: Path
    load: Load = field(default_factory=Load)
    slo_p99_ms: float | None = None
    cores: int | None = None  # None: every core this process may use
    memory_mb: float | None = None
    max_trials: int = 12
    space: Space | None = None  # None: ``default_space(cores, rows)``

    def __post_init__(self) -> None:
        if not self.model.is_file():
            raise ConfigError(f"no such model file: {self.model}")
        if self.model.suffix != ".onnx":
            raise ConfigError(f"the model must be an .onnx file, got {self.model}")
        if self.load.sample is not None and not self.load.sample.exists():
            raise ConfigError(f"--sample: no such file: {self.load.sample}")
        have = available_cores()
        if self.cores is not None and not 1 <= self.cores <= have:
            raise ConfigError(
                f"--cores {self.cores}: this process may use {have} core(s) "
                f"(os.sched_getaffinity); give 1..{have}"
            )
        if self.slo_p99_ms is not None and not self.slo_p99_ms > 0:
            raise ConfigError(f"--slo-p99-ms must be above 0, got {self.slo_p99_ms}")
        if self.memory_mb is not None and not self.memory_mb > 0:
            raise ConfigError(f"--memory-mb must be above 0, got {self.memory_mb}")
        if self.max_trials < 1:
            raise ConfigError(f"--max-trials must be at least 1, got {self.max_trials}")
        if self.load.rows < 1 or self.load.concurrency < 1:
            raise ConfigError("--rows and --concurrency must be at least 1")

    @property
    def core_count(self) -> int:
        return self.cores or available_cores()

    @property
    def cpus(self) -> frozenset[int] | None:
        """The cores trials are pinned to: the first ``--cores`` this process may use."""
        mine = sorted(os.sched_getaffinity(0))
        return frozenset(mine[: self.cores]) if self.cores and self.cores < len(mine) else None

    @property
    def knob_space(self) -> Space:
        return self.space or default_space(self.core_count, self.load.rows)

    @property
    def objective(self) -> Objective:
        return Objective(self.slo_p99_ms, self.memory_mb)


@dataclass(frozen=True, slots=True)
class Profile:
    config: ProfileConfig
    trials: list[Trial]
    choice: Choice
    recommendation: Recommendation
    stopped: str

    def toml(self) -> str:
        header = [
            f"sluice profile of {self.config.model.name}: "
            f"{len(self.trials)} trial(s), {self.config.core_count} core(s)",
            *self.recommendation.lines(),
        ]
        return config_toml(self.recommendation.knobs, header)

    def summary(self) -> dict[str, Any]:
        c = self.config
        return {
            "model": str(c.model),
            "cores": c.core_count,
            "slo_p99_ms": c.slo_p99_ms,
            "memory_mb": c.memory_mb,
            "rows": c.load.rows,
            "concurrency": c.load.concurrency,
            "window_s": c.load.window_s,
            "max_trials": c.max_trials,
            "grid_size": len(c.knob_space.grid()),
            "stopped": self.stopped,
            "recommendation": self.recommendation.to_dict(),
            "loadavg": list(os.getloadavg()),
        }


def run_profile(
    config: ProfileConfig,
    progress: Progress | None = None,
    evaluate: Callable[[Knobs, int], Trial] | None = None,
) -> Profile:
    """Search the configuration; raises ``ProfileError`` when the model or sample cannot run."""
    search = Search(config.knob_space, config.objective, config.max_trials)
    search.run(evaluate or _evaluator(config), progress)
    choice = choose(search.trials, config.objective)
    return Profile(
        config, search.trials, choice, recommend(choice, config.core_count), search.stopped
    )


def _evaluator(config: ProfileConfig) -> Callable[[Knobs, int], Trial]:
    def evaluate(knobs: Knobs, index: int) -> Trial:
        try:
            return run_trial(config.model, knobs, config.load, index, config.cpus)
        except TrialError as exc:
            # The first trial failing is the model or the sample; a later one, that config.
            raise ProfileError(f"trial {index} ({knobs.label}) failed: {exc}") from exc
        except SluiceError as exc:  # the load generator: the sample does not fit the model
            raise ProfileError(f"the load could not be prepared: {exc}") from exc

    return evaluate
