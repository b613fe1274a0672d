"""The knob space, the search and the choice, against a deterministic stand-in for trials.

A real trial takes seconds (tests/profiler/test_profile.py runs some); the search itself is a
pure function of the results it sees, so here each configuration's result is computed."""

from __future__ import annotations

import pytest

from server.profiler.objective import Objective, choose, knee, recommend
from server.profiler.search import Search
from server.profiler.space import Knobs, Space, default_space
from server.profiler.trial import Trial


def trial(
    knobs: Knobs | None, index: int, rows_per_s: float, p99: float, rss: float = 100
) -> Trial:
    return Trial(index, knobs, 1, 8, rows_per_s, rows_per_s, p99 / 2, p99 * 0.8, p99, rss, 1.5,
                 3, True, 0)  # fmt: skip


def surface(knobs: Knobs, index: int) -> Trial:
    """Throughput peaks at 4 threads, batch 64, delay 500, no spinning; p99 grows with delay."""
    score = 1000.0 * knobs.threads - 150 * abs(knobs.threads - 4) ** 2
    score += 300 * (knobs.max_batch_size == 64) + 200 * (knobs.max_queue_delay_us == 500)
    score -= 100 * knobs.allow_spinning + 50 * (knobs.workers - 1)
    return trial(knobs, index, score, 1 + knobs.max_queue_delay_us / 1000)


def test_grid_respects_the_core_constraint() -> None:
    space = default_space(cores=4, rows=1)
    grid = space.grid()
    assert grid and all(k.instances * k.intra_op_threads * k.workers <= 4 for k in grid)
    assert Knobs(instances=2, intra_op_threads=2, workers=2) not in grid
    assert all(space.allows(n) for k in grid[:20] for n in space.neighbours(k))


def test_layouts_use_most_of_the_cores() -> None:
    layouts = default_space(cores=8, rows=1).layouts()
    assert layouts and all(5 <= k.threads <= 8 for k in layouts)
    assert layouts[0].workers == 1


@pytest.mark.parametrize("max_trials", [1, 3, 7])
def test_search_stops_at_max_trials(max_trials: int) -> None:
    space = default_space(cores=8, rows=1)
    trials = Search(space, Objective(), max_trials).run(surface)
    assert len(trials) == max_trials
    assert all(t.knobs is not None and space.allows(t.knobs) for t in trials)
    assert len({t.knobs for t in trials}) == max_trials  # no configuration twice


def test_search_finds_the_optimum_with_a_fraction_of_the_grid() -> None:
    space = Space(cores=4, instances=(1, 2, 4), intra_op_threads=(1, 2, 4), workers=(1, 2),
                  max_batch_size=(8, 64), max_queue_delay_us=(0, 500, 2000))  # fmt: skip
    search = Search(space, Objective(), max_trials=40)
    trials = search.run(surface)
    best = max(surface(k, 0).rows_per_s for k in space.grid())
    assert max(t.rows_per_s for t in trials) == best
    assert len(trials) <= len(space.grid()) // 2
    assert search.stopped  # stopped early, and says why


def test_choice_is_the_fastest_within_the_slo() -> None:
    trials = [trial(Knobs(), 1, 900, 2.0), trial(Knobs(workers=2), 2, 1200, 9.0),
              trial(Knobs(instances=2), 3, 1000, 4.0)]  # fmt: skip
    choice = choose(trials, Objective(slo_p99_ms=5))
    assert choice.met and choice.trial.index == 3 and "within 5 ms" in choice.rule
    assert choose(trials, Objective(slo_p99_ms=50)).trial.index == 2


def test_memory_limit_excludes_trials() -> None:
    trials = [trial(Knobs(), 1, 900, 2.0, rss=100), trial(Knobs(workers=2), 2, 1200, 2.0, rss=300)]
    assert choose(trials, Objective(slo_p99_ms=5, memory_mb=200)).trial.index == 1


def test_unmeetable_slo_answers_with_the_closest_trial() -> None:
    trials = [trial(Knobs(), 1, 900, 3.0), trial(Knobs(workers=2), 2, 1200, 2.5)]
    choice = choose(trials, Objective(slo_p99_ms=1))
    assert not choice.met and choice.trial.index == 2
    assert "no configuration met p99 <= 1 ms" in choice.rule and "2.50 ms" in choice.rule


def test_knee_without_slo() -> None:
    points = [(100, 1.0), (900, 2.0), (1000, 8.0), (1010, 20.0), (500, 30.0)]
    trials = [trial(Knobs(instances=i + 1), i + 1, r, p) for i, (r, p) in enumerate(points)]
    assert knee(trials).index == 2
    assert "knee" in choose(trials, Objective()).rule


def test_recommendation_from_the_chosen_trial() -> None:
    chosen = trial(Knobs(instances=2), 4, 1000, 4.0, rss=200)
    rec = recommend(choose([chosen], Objective(slo_p99_ms=5)), cores=8)
    assert rec.memory_mb == 250 and "25% headroom" in rec.memory_rule
    assert rec.cpu_cores == 2  # 1.5 busy cores, rounded up
    assert rec.rows_per_s == 1000 and rec.p99_ms == 4.0 and rec.trial == 4
