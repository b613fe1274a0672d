"""Coarse-to-fine search with early stopping, in the spirit of Model Analyzer's quick mode.

Coarse: the ways of spreading threads over workers, instances and intra-op threads that use
most of the cores (``Space.layouts``), at most half the trials. Fine: from the best trial so
far, one knob moved one step at a time, batching and spinning first; a move counts when it
gains more than ``MIN_GAIN`` (the noise between two windows of one trial is a few per cent),
and the search restarts from the new best. It stops when every neighbour of the best has run
(a local optimum), after ``PATIENCE`` trials without a gain, or at ``max_trials``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from server.profiler.objective import Objective
from server.profiler.space import Knobs, Space
from server.profiler.trial import Trial

MIN_GAIN = 0.03
PATIENCE = 6
# The knobs the fine pass tries first: the ones that moved throughput most on the reference MLP.
FINE_ORDER = (
    "max_batch_size",
    "max_queue_delay_us",
    "allow_spinning",
    "instances",
    "intra_op_threads",
    "workers",
    "memory_arena",
    "inter_op_threads",
)

Evaluate = Callable[[Knobs, int], Trial]
Progress = Callable[[Trial, Trial, int, int], None]


@dataclass
class Search:
    space: Space
    objective: Objective
    max_trials: int
    trials: list[Trial] = field(default_factory=list)
    stopped: str = ""

    def run(self, evaluate: Evaluate, progress: Progress | None = None) -> list[Trial]:
        """Run trials through ``evaluate(knobs, index)`` until the search stops."""
        for knobs in self.plan():
            trial = evaluate(knobs, len(self.trials) + 1)
            self.trials.append(trial)
            if progress is not None:
                progress(trial, self.best(), len(self.trials), self.max_trials)
        return self.trials

    def best(self) -> Trial:
        return max(self.trials, key=self.objective.score)

    def tried(self) -> set[Knobs]:
        return {t.knobs for t in self.trials if t.knobs is not None}

    def plan(self) -> Iterator[Knobs]:
        """The next configuration to run, decided after each trial's result is in."""
        coarse = self.space.layouts()[: max(1, math.ceil(self.max_trials / 2))]
        for knobs in coarse:
            if len(self.trials) >= self.max_trials:
                self.stopped = f"--max-trials ({self.max_trials}) reached"
                return
            yield knobs
        since_gain = 0
        while True:
            best = self.best()
            assert best.knobs is not None
            todo = [k for k in fine_neighbours(self.space, best.knobs) if k not in self.tried()]
            if not todo:
                self.stopped = "every neighbour of the best configuration ran (local optimum)"
                return
            if len(self.trials) >= self.max_trials:
                self.stopped = f"--max-trials ({self.max_trials}) reached"
                return
            if since_gain >= PATIENCE:
                self.stopped = f"{PATIENCE} trials in a row without a gain"
                return
            yield todo[0]
            if self.gained(best):
                since_gain = 0
            else:
                since_gain += 1

    def gained(self, previous: Trial) -> bool:
        """The last trial beat ``previous`` by more than the noise."""
        last = self.trials[-1]
        mine, theirs = self.objective.score(last), self.objective.score(previous)
        if mine[0] != theirs[0]:
            return mine[0] > theirs[0]
        if mine[0] == 1:  # both miss the SLO: closer counts
            return -mine[1] < -theirs[1] * (1 - MIN_GAIN)
        return mine[1] > theirs[1] * (1 + MIN_GAIN)


def fine_neighbours(space: Space, knobs: Knobs) -> list[Knobs]:
    found = list(space.neighbours(knobs))
    order = {name: i for i, name in enumerate(FINE_ORDER)}

    def moved(k: Knobs) -> int:
        changed = [n for n in FINE_ORDER if getattr(k, n) != getattr(knobs, n)]
        return order[changed[0]] if changed else len(order)

    return sorted(found, key=moved)
