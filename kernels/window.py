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


@jit()
def reservoir_skip(
    reservoir: FloatArray,
    values: FloatArray,
    start: int,
    next_take: int,
    w: float,
    uniforms: FloatArray,
) -> tuple[int, float, int]:
    """Algorithm L (Li, 1994) over one chunk of a stream whose reservoir is already full.

    ``values`` are the stream's items ``start .. start + len(values) - 1``; ``next_take`` is
    the index of the next item that enters and ``w`` the running weight. Each entry consumes
    three numbers of ``uniforms`` (in ``(0, 1]``): the slot it replaces, the new weight and the
    skip to the next entry. Returns ``(next_take, w, used)``; when ``uniforms`` ran out before
    the chunk did, call again with more from where it stopped. Only the ~``k log(n / k)``
    entries cost anything, not every item as with Algorithm R.
    """
    k = reservoir.shape[0]
    end = start + values.shape[0]
    used = 0
    while next_take < end and used + 3 <= uniforms.shape[0]:
        slot = min(int(uniforms[used] * k), k - 1)
        reservoir[slot] = values[next_take - start]
        w *= np.exp(np.log(uniforms[used + 1]) / k)
        next_take += int(np.floor(np.log(uniforms[used + 2]) / np.log1p(-w))) + 1
        used += 3
    return next_take, w, used
