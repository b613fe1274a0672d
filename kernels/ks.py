"""Exact two-sample Kolmogorov-Smirnov D and Wasserstein-1 from sorted samples, in one walk.

Both statistics are functionals of the two empirical CDFs: KS is their largest gap, W1 the area
between them. Walking the merged order once gives the CDFs at every value, so neither the
concatenated array nor the CDF arrays that scipy builds are ever allocated.

The CDF gap at a point is kept as the integer ``|i*m - j*n|`` (= n*m * |i/n - j/m|), so D is
exact, and the walk is written without data-dependent branches: which sample the next value
comes from is a coin flip for similar samples, and a mispredicted branch per element made the
first, branchy version 3x slower (22 ms against 7 ms for 1M x 1M here).
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
    total = n + m
    i = 0
    j = 0
    largest = 0
    area = 0.0
    x = a[0]
    y = b[0]
    for _ in range(total - 1):
        step_a = 1 if x <= y else 0
        value = min(x, y)
        i += step_a
        j += 1 - step_a
        x = a[i] if i < n else np.inf
        y = b[j] if j < m else np.inf
        following = min(x, y)
        gap = abs(i * m - j * n)
        # Between tied values the CDFs are not yet complete: only a real step counts for D
        # (ties add zero area anyway, since following == value there).
        largest = max(largest, gap if following > value else 0)
        area += gap * (following - value)
    scale = float(n) * float(m)
    return largest / scale, area / scale
