import numpy as np

from kernels.window import window_pass


def test_window_pass_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(5000) * 2
    values[::97] = np.nan
    values[5::211] = np.inf
    values[7::307] = -np.inf
    edges = np.quantile(rng.standard_normal(1000), np.arange(1, 10) / 10)
    values[10] = edges[3]  # a value on an edge goes to the bin above it
    bins = np.full(10, 5, dtype=np.int64)  # counts add to what is there
    out = np.empty(5000)
    nans, infs, outside, finite = window_pass(values, edges, -2.5, 2.5, bins, out)
    kept = values[np.isfinite(values)]
    assert (nans, infs, finite) == (np.isnan(values).sum(), np.isinf(values).sum(), kept.size)
    assert outside == ((kept < -2.5) | (kept > 2.5)).sum()
    expected = np.bincount(np.searchsorted(edges, kept, side="right"), minlength=10) + 5
    assert np.array_equal(bins, expected)
    assert np.array_equal(out[:finite], kept)
