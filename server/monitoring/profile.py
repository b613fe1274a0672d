"""Per-feature reference profiles: what drift is measured against.

A numeric profile holds the 9 interior decile edges (numpy's default quantile method), the
reference share of each of the 10 bins (first and last open), a sorted reference sample for
exact KS and Wasserstein (every finite value up to ``sample_cap``, a seeded random sample
beyond), and the summary. NaN and null count as missing; +-inf is counted apart and kept out of
every distribution statistic. A categorical profile holds category counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kernels.histogram import quantile_edges, sorted_bin_counts
from kernels.summary import compact_finite, moments

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DECILES = (
    np.arange(1, 10) / 10
)  # 0.1 ... 0.9 exactly as written in decimal; linspace is 1 ulp off at 0.3, 0.7


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
    """A column reduced to what drift needs: counts and its sorted finite values."""

    rows: int
    nulls: int
    nonfinite: int
    sorted_values: FloatArray

    @property
    def count(self) -> int:
        return int(self.sorted_values.shape[0])


def sorted_column(chunks: Sequence[FloatArray], scratch: FloatArray | None = None) -> NumericColumn:
    """Gather the finite values of a column's chunks (float64, NaN for missing) into one
    buffer and sort it in place: one copy, one sort.

    The buffer is ``scratch`` when it is large enough (the result then lives in it), else a
    new array.
    """
    rows = sum(chunk.shape[0] for chunk in chunks)
    enough = scratch is not None and scratch.shape[0] >= rows
    finite = scratch if scratch is not None and enough else np.empty(rows)
    count = nulls = nonfinite = 0
    for chunk in chunks:
        written, n_nan, n_inf = compact_finite(chunk, finite, count)
        count += written
        nulls += n_nan
        nonfinite += n_inf
    finite = finite[:count]
    finite.sort()
    return NumericColumn(rows, nulls, nonfinite, finite)


def numeric_profile(
    chunks: Sequence[FloatArray], sample_cap: int, seed: int, scratch: FloatArray | None = None
) -> NumericProfile:
    """Profile a reference column given as chunks (float64, NaN for missing). With
    ``scratch``, the sample may live in it: the profile is then only valid until the scratch
    buffer is reused."""
    column = sorted_column(chunks, scratch)
    data = column.sorted_values
    _, mean, m2, minimum, maximum = moments(data)
    if column.count == 0:
        edges = np.empty(0)
        proportions = np.empty(0)
        mean = std = minimum = maximum = math.nan
    else:
        edges = quantile_edges(data, DECILES)
        proportions = sorted_bin_counts(data, edges) / column.count
        std = math.sqrt(max(m2, 0.0) / column.count)
    sample = data
    if column.count > sample_cap:
        rng = np.random.default_rng(seed)
        sample = np.sort(data[rng.choice(column.count, size=sample_cap, replace=False)])
    return NumericProfile(
        rows=column.rows,
        count=column.count,
        nulls=column.nulls,
        nonfinite=column.nonfinite,
        minimum=minimum,
        maximum=maximum,
        mean=mean,
        std=std,
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
