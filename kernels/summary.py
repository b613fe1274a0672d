"""One-pass column summaries: count, NaNs, infinities, min, max, mean and std (Welford).

A summary is a float64 array laid out as ``SUMMARY_FIELDS``. NaN counts as missing; +-inf is
counted apart and kept out of min/max/mean/std, so one stray infinity cannot poison the moments.
Welford's update runs in ``_LANES`` interleaved accumulators merged with Chan's formula: the
update is a chain of dependent divisions, and four independent chains let the CPU overlap them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import prange

from kernels._numba import jit

SUMMARY_FIELDS = ("count", "nan", "inf", "min", "max", "mean", "std")
COUNT, NAN, INF, MIN, MAX, MEAN, STD = range(7)
_LANES = 4

FloatArray = npt.NDArray[np.float64]


@jit()
def _merge(
    n_a: float, mean_a: float, m2_a: float, n_b: float, mean_b: float, m2_b: float
) -> tuple[float, float, float]:
    """Chan et al.'s pairwise update: the moments of the union of two disjoint sets."""
    if n_b == 0.0:
        return n_a, mean_a, m2_a
    if n_a == 0.0:
        return n_b, mean_b, m2_b
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (n_a * n_b / n)


@jit()
def _summarize_range(values: FloatArray, start: int, stop: int, out: FloatArray) -> FloatArray:
    """Summarize ``values[start:stop]``; finite values are also copied, in order, to ``out``
    (pass an empty array to skip the copy). Returns the raw state: count, nan, inf, min, max,
    mean, M2."""
    counts = np.zeros(_LANES)
    means = np.zeros(_LANES)
    m2s = np.zeros(_LANES)
    n_nan = 0
    n_inf = 0
    lo = np.inf
    hi = -np.inf
    k = 0
    copy = out.shape[0] > 0
    for i in range(start, stop):
        x = values[i]
        if np.isnan(x):
            n_nan += 1
            continue
        if np.isinf(x):
            n_inf += 1
            continue
        if copy:
            out[k] = x
        lane = k % _LANES
        k += 1
        counts[lane] += 1.0
        delta = x - means[lane]
        means[lane] += delta / counts[lane]
        m2s[lane] += delta * (x - means[lane])
        lo = min(lo, x)
        hi = max(hi, x)
    n, mean, m2 = counts[0], means[0], m2s[0]
    for lane in range(1, _LANES):
        n, mean, m2 = _merge(n, mean, m2, counts[lane], means[lane], m2s[lane])
    state = np.empty(7)
    state[COUNT] = n
    state[NAN] = n_nan
    state[INF] = n_inf
    state[MIN] = lo
    state[MAX] = hi
    state[MEAN] = mean
    state[STD] = m2
    return state


@jit()
def _finish(state: FloatArray) -> FloatArray:
    """Turn M2 into the population std (ddof=0); empty input gives NaN min/max/mean/std."""
    result = state.copy()
    if state[COUNT] == 0.0:
        result[MIN] = np.nan
        result[MAX] = np.nan
        result[MEAN] = np.nan
        result[STD] = np.nan
    else:
        result[STD] = np.sqrt(max(state[STD], 0.0) / state[COUNT])
    return result


@jit()
def summarize(values: FloatArray) -> FloatArray:
    """Summary of ``values`` laid out as ``SUMMARY_FIELDS``."""
    return _finish(_summarize_range(values, 0, values.shape[0], np.empty(0)))


@jit()
def summarize_finite(values: FloatArray, out: FloatArray) -> FloatArray:
    """``summarize`` that also copies the finite values, in order, to ``out[:count]``.

    ``out`` must hold ``len(values)`` elements. One pass over the data serves both the
    summary and the compaction that sorting needs.
    """
    return _finish(_summarize_range(values, 0, values.shape[0], out))


@jit(parallel=True)
def summarize_parallel(values: FloatArray, n_chunks: int) -> FloatArray:
    """``summarize`` over ``n_chunks`` contiguous chunks in parallel, merged exactly."""
    n_total = values.shape[0]
    n_chunks = max(1, min(n_chunks, n_total))
    states = np.empty((n_chunks, 7))
    for c in prange(n_chunks):
        start = c * n_total // n_chunks
        stop = (c + 1) * n_total // n_chunks
        states[c] = _summarize_range(values, start, stop, np.empty(0))
    total = states[0].copy()
    for c in range(1, n_chunks):
        s = states[c]
        n, mean, m2 = _merge(total[COUNT], total[MEAN], total[STD], s[COUNT], s[MEAN], s[STD])
        total[COUNT] = n
        total[MEAN] = mean
        total[STD] = m2
        total[NAN] += s[NAN]
        total[INF] += s[INF]
        total[MIN] = min(total[MIN], s[MIN])
        total[MAX] = max(total[MAX], s[MAX])
    return _finish(total)
