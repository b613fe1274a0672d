import numpy as np
import pytest

from kernels.window import reservoir_rows, window_rows


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_window_rows_matches_numpy_per_watched_column(dtype: type) -> None:
    rng = np.random.default_rng(0)
    matrix = (rng.standard_normal((5000, 4)) * 2).astype(dtype)
    matrix[::97, 0] = np.nan
    matrix[5::211, 2] = np.inf
    matrix[7::307, 2] = -np.inf
    columns = np.array([2, 0], dtype=np.int64)  # two of the four columns, out of order
    decile = np.quantile(rng.standard_normal(1000), np.arange(1, 10) / 10)
    edges = np.full((2, 9), np.inf)
    edges[0] = decile
    edges[1, :5] = decile[::2]  # fewer edges: the rest is +inf padding
    matrix[10, 2] = edges[0, 3]  # a value on an edge goes to the bin above it
    low, high = np.array([-2.5, -1.0]), np.array([2.5, 1.0])
    bins = np.full((2, 10), 5, dtype=np.int64)  # counts add to what is there
    counts = np.zeros((2, 3), dtype=np.int64)
    window_rows(matrix, columns, edges, low, high, bins, counts)
    for j, column in enumerate(columns):
        values = matrix[:, column].astype(np.float64)
        kept = values[np.isfinite(values)]
        outside = ((kept < low[j]) | (kept > high[j])).sum()
        assert counts[j].tolist() == [np.isnan(values).sum(), np.isinf(values).sum(), outside]
        real = edges[j][np.isfinite(edges[j])]
        expected = np.bincount(np.searchsorted(real, kept, side="right"), minlength=10) + 5
        assert np.array_equal(bins[j], expected)


def test_reservoir_rows_writes_whole_rows_and_stops_when_uniforms_run_out() -> None:
    reservoir = np.full((4, 2), -1.0)
    values = np.arange(300, dtype=np.float64).reshape(100, 3)  # rows start..start+99
    columns = np.array([2, 0], dtype=np.int64)
    uniforms = np.full(6, 0.5)  # two entries' worth
    next_take, w, used = reservoir_rows(reservoir, values, columns, 50, 50, 0.5, uniforms)
    assert used == 6 and next_take < 150
    row = reservoir[2]  # slot int(0.5 * 4): each entry wrote one kept row's watched columns
    assert row[1] % 3 == 0 and row[0] == row[1] + 2
    assert 0 < w < 0.5
