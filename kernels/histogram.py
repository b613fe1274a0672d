"""Quantile bin edges and histograms with a NaN slot.

Bins follow ``np.searchsorted(edges, x, side="right")``: bin 0 is ``x < edges[0]``, bin ``i``
is ``edges[i-1] <= x < edges[i]``, the last bin is ``x >= edges[-1]``; the first and last bins
are open, so +-inf land there. ``len(edges) + 1`` value bins are followed by one NaN slot.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import prange

from kernels._numba import jit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@jit()
def quantile_edges(sorted_values: FloatArray, probabilities: FloatArray) -> FloatArray:
    """Quantiles of sorted, NaN-free data by numpy's default (``method="linear"``), computed
    exactly as ``np.quantile`` does, so a value equal to an edge falls in the same bin."""
    n = sorted_values.shape[0]
    edges = np.empty(probabilities.shape[0])
    for k in range(probabilities.shape[0]):
        virtual = (n - 1) * probabilities[k]
        below = np.floor(virtual)
        gamma = virtual - below
        lo = min(max(int(below), 0), n - 1)
        hi = min(lo + 1, n - 1)
        a = sorted_values[lo]
        b = sorted_values[hi]
        diff = b - a
        # numpy's _lerp: interpolate from the nearer end, so gamma == 1 returns b exactly.
        edges[k] = b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma
    return edges


@jit()
def _bin_of(edges: FloatArray, x: float) -> int:
    """Number of edges <= x (binary search; x is not NaN)."""
    lo = 0
    hi = edges.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@jit()
def _count_range(
    values: FloatArray, start: int, stop: int, edges: FloatArray, out: IntArray
) -> None:
    nan_slot = edges.shape[0] + 1
    for i in range(start, stop):
        x = values[i]
        if np.isnan(x):
            out[nan_slot] += 1
        else:
            out[_bin_of(edges, x)] += 1


@jit()
def bin_counts(values: FloatArray, edges: FloatArray) -> IntArray:
    """Counts per bin for ``len(edges) + 1`` bins, then the NaN count."""
    out = np.zeros(edges.shape[0] + 2, dtype=np.int64)
    _count_range(values, 0, values.shape[0], edges, out)
    return out


@jit(parallel=True)
def bin_counts_parallel(values: FloatArray, edges: FloatArray, n_chunks: int) -> IntArray:
    """``bin_counts`` over contiguous chunks in parallel; each chunk counts into its own row,
    so threads never write the same cache line, and the rows are summed at the end."""
    n_chunks = max(1, n_chunks)
    private = np.zeros((n_chunks, edges.shape[0] + 2), dtype=np.int64)
    n = values.shape[0]
    for c in prange(n_chunks):
        _count_range(values, c * n // n_chunks, (c + 1) * n // n_chunks, edges, private[c])
    counts: IntArray = private.sum(axis=0)
    return counts


@jit()
def sorted_bin_counts(sorted_values: FloatArray, edges: FloatArray) -> IntArray:
    """``bin_counts`` (without the NaN slot) for sorted, NaN-free data: one binary search per
    edge instead of one per value."""
    n_bins = edges.shape[0] + 1
    out = np.zeros(n_bins, dtype=np.int64)
    below = np.searchsorted(sorted_values, edges, side="left")
    previous = 0
    for k in range(edges.shape[0]):
        out[k] = below[k] - previous
        previous = below[k]
    out[n_bins - 1] = sorted_values.shape[0] - previous
    return out


@jit()
def outside_count(sorted_values: FloatArray, low: float, high: float) -> int:
    """How many sorted values lie strictly outside ``[low, high]``."""
    n = sorted_values.shape[0]
    below = np.searchsorted(sorted_values, low, side="left")
    above = n - np.searchsorted(sorted_values, high, side="right")
    return int(below + above)


@jit()
def null_and_outside_counts(values: FloatArray, low: float, high: float) -> tuple[int, int]:
    """``(nulls, outside)`` for unsorted data: NaNs, and non-NaN values (inf included)
    strictly outside ``[low, high]``. The rates divide by ``len(values)`` and by the non-null
    count respectively."""
    nulls = 0
    outside = 0
    for i in range(values.shape[0]):
        x = values[i]
        if np.isnan(x):
            nulls += 1
        elif x < low or x > high:
            outside += 1
    return nulls, outside
