import numpy as np
import pytest

from kernels.histogram import (
    bin_counts,
    bin_counts_parallel,
    null_and_outside_counts,
    outside_count,
    quantile_edges,
    sorted_bin_counts,
)

DECILES = np.arange(1, 10) / 10


def _oracle_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    real = values[~np.isnan(values)]
    bins = np.bincount(np.searchsorted(edges, real, side="right"), minlength=edges.size + 1)
    return np.append(bins, np.isnan(values).sum())


@pytest.mark.parametrize("n", [1, 2, 5, 10, 11, 999, 10_000])
def test_quantile_edges_equal_numpy_exactly(n: int) -> None:
    data = np.sort(np.random.default_rng(n).standard_normal(n))
    np.testing.assert_array_equal(quantile_edges(data, DECILES), np.quantile(data, DECILES))


def test_quantile_edges_with_ties_equal_numpy_exactly() -> None:
    data = np.sort(np.random.default_rng(0).integers(0, 4, 1003).astype(np.float64))
    np.testing.assert_array_equal(quantile_edges(data, DECILES), np.quantile(data, DECILES))


def test_bin_counts_match_searchsorted_with_nan_slot() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(-5, 5, 10_000).astype(np.float64)  # many values on the edges
    values[::13] = np.nan
    values[5] = np.inf
    values[6] = -np.inf
    edges = np.quantile(values[~np.isnan(values)], DECILES)
    np.testing.assert_array_equal(bin_counts(values, edges), _oracle_counts(values, edges))


@pytest.mark.parametrize("chunks", [1, 3, 16])
def test_parallel_bin_counts_agree_with_serial(chunks: int) -> None:
    values = np.random.default_rng(2).standard_normal(50_001)
    values[::7] = np.nan
    edges = np.quantile(values[~np.isnan(values)], DECILES)
    np.testing.assert_array_equal(
        bin_counts_parallel(values, edges, chunks), bin_counts(values, edges)
    )


def test_sorted_bin_counts_agree_with_bin_counts() -> None:
    values = np.sort(np.random.default_rng(3).integers(0, 20, 5000).astype(np.float64))
    edges = np.quantile(values, DECILES)
    np.testing.assert_array_equal(sorted_bin_counts(values, edges), bin_counts(values, edges)[:-1])


def test_outside_count() -> None:
    values = np.sort(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 1.0, 3.0]))
    assert outside_count(values, -1.0, 1.0) == 2
    assert outside_count(np.empty(0), 0.0, 1.0) == 0


def test_null_and_outside_counts_on_unsorted_data() -> None:
    values = np.random.default_rng(4).normal(0.0, 2.0, 5000)
    values[::9] = np.nan
    values[4] = np.inf
    real = values[~np.isnan(values)]
    want = (int(np.isnan(values).sum()), int(np.sum((real < -1.0) | (real > 1.5))))
    assert null_and_outside_counts(values, -1.0, 1.5) == want
