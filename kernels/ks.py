"""Exact two-sample Kolmogorov-Smirnov D and Wasserstein-1 from sorted samples, in one walk.

Both statistics are functionals of the two empirical CDFs: KS is their largest gap, W1 the area
between them. Walking the merged order once gives the CDFs at every distinct value, so neither
the concatenated array nor the CDF arrays that scipy builds are ever allocated.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kernels._numba import jit

FloatArray = npt.NDArray[np.float64]


@jit()
def ks_wasserstein_sorted(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """``(D, W1)`` of two sorted, finite samples, as ``scipy.stats.ks_2samp(a, b).statistic``
    and ``scipy.stats.wasserstein_distance(a, b)``; ``(nan, nan)`` when either is empty."""
    n = a.shape[0]
    m = b.shape[0]
    if n == 0 or m == 0:
        return np.nan, np.nan
    i = 0
    j = 0
    d = 0.0
    w = 0.0
    value = min(a[0], b[0])
    while True:
        # Step both CDFs past every copy of ``value``: ties move together, as in scipy's
        # searchsorted(side="right").
        while i < n and a[i] <= value:
            i += 1
        while j < m and b[j] <= value:
            j += 1
        gap = abs(i / n - j / m)
        d = max(d, gap)
        if i == n and j == m:
            break
        following = a[i] if j == m or (i < n and a[i] < b[j]) else b[j]
        w += gap * (following - value)
        value = following
    return d, w
