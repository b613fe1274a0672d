"""Per-feature reference profiles: what drift is measured against.

A numeric profile holds the 9 interior decile edges (numpy's default quantile method), the
reference share of each of the 10 bins (first and last open), a sorted reference sample for
exact KS and Wasserstein (every finite value up to ``sample_cap``, a seeded random sample
beyond), and the summary. NaN and null count as missing; +-inf is counted apart and kept out of
every distribution statistic. A categorical profile holds category counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kernels.histogram import quantile_edges, sorted_bin_counts
from kernels.summary import COUNT, INF, MAX, MEAN, MIN, NAN, STD, summarize_finite

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DECILES = np.linspace(0.1, 0.9, 9)


@dataclass(frozen=True, slots=True, eq=False)
class NumericProfile:
    """Reference profile of one numeric feature; ``edges`` is empty when no value is finite."""

    rows: int
    count: int
    nulls: int
    nonfinite: int
    minimum: float
    maximum: float
    mean: float
    std: float
    edges: FloatArray
    proportions: FloatArray
    sample: FloatArray

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0


@dataclass(frozen=True, slots=True, eq=False)
class CategoricalProfile:
    """Reference profile of one categorical feature."""

    rows: int
    nulls: int
    categories: tuple[str, ...]
    counts: IntArray

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0


@dataclass(frozen=True, slots=True, eq=False)
class NumericColumn:
    """A column reduced to what drift needs: its summary and its sorted finite values."""

    rows: int
    count: int
    nulls: int
    nonfinite: int
    minimum: float
    maximum: float
    mean: float
    std: float
    sorted_values: FloatArray


def sorted_column(values: FloatArray) -> NumericColumn:
    """Summarize ``values`` and sort its finite values (one pass, one copy, one sort)."""
    finite = np.empty_like(values)
    state = summarize_finite(values, finite)
    count = int(state[COUNT])
    finite = finite[:count]
    finite.sort()
    return NumericColumn(
        rows=values.shape[0],
        count=count,
        nulls=int(state[NAN]),
        nonfinite=int(state[INF]),
        minimum=float(state[MIN]),
        maximum=float(state[MAX]),
        mean=float(state[MEAN]),
        std=float(state[STD]),
        sorted_values=finite,
    )


def numeric_profile(values: FloatArray, sample_cap: int, seed: int) -> NumericProfile:
    """Profile a reference column (float64, NaN for missing)."""
    column = sorted_column(values)
    data = column.sorted_values
    if column.count == 0:
        edges = np.empty(0)
        proportions = np.empty(0)
    else:
        edges = quantile_edges(data, DECILES)
        proportions = sorted_bin_counts(data, edges) / column.count
    sample = data
    if column.count > sample_cap:
        rng = np.random.default_rng(seed)
        sample = np.sort(data[rng.choice(column.count, size=sample_cap, replace=False)])
    return NumericProfile(
        rows=column.rows,
        count=column.count,
        nulls=column.nulls,
        nonfinite=column.nonfinite,
        minimum=column.minimum,
        maximum=column.maximum,
        mean=column.mean,
        std=column.std,
        edges=edges,
        proportions=proportions,
        sample=sample,
    )


def categorical_profile(counts: dict[str, int], nulls: int, rows: int) -> CategoricalProfile:
    """Profile a reference column from its category counts, most frequent first."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return CategoricalProfile(
        rows=rows,
        nulls=nulls,
        categories=tuple(name for name, _ in ordered),
        counts=np.array([count for _, count in ordered], dtype=np.int64),
    )
