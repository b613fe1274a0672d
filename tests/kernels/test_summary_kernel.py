import numpy as np
import pytest

from kernels.summary import (
    COUNT,
    INF,
    MAX,
    MEAN,
    MIN,
    NAN,
    STD,
    compact_finite,
    moments,
    summarize,
    summarize_parallel,
)


def _oracle(values: np.ndarray) -> tuple[float, ...]:
    finite = values[np.isfinite(values)]
    return (
        finite.size,
        np.isnan(values).sum(),
        np.isinf(values).sum(),
        finite.min(),
        finite.max(),
        finite.mean(),
        finite.std(),
    )


def _messy(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(3.0, 2.0, n)
    values[rng.random(n) < 0.1] = np.nan
    values[rng.random(n) < 0.01] = np.inf
    values[rng.random(n) < 0.01] = -np.inf
    return values


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000, 10_001])
def test_summary_matches_numpy(n: int) -> None:
    values = _messy(n, n)
    values[0] = 1.5  # at least one finite value
    got = summarize(values)
    want = _oracle(values)
    for field in (COUNT, NAN, INF):
        assert got[field] == want[field]
    np.testing.assert_allclose(got[[MIN, MAX, MEAN, STD]], want[3:], rtol=1e-12, atol=1e-12)


def test_compaction_and_moments_match_the_one_pass_summary() -> None:
    values = _messy(5000, 1)
    out = np.empty_like(values)
    count, n_nan, n_inf = compact_finite(values, out, 0)
    np.testing.assert_array_equal(out[:count], values[np.isfinite(values)])
    n, mean, m2, lo, hi = moments(out[:count])
    whole = summarize(values)
    assert (count, n_nan, n_inf) == (whole[COUNT], whole[NAN], whole[INF])
    np.testing.assert_allclose([n, lo, hi, mean], whole[[COUNT, MIN, MAX, MEAN]], rtol=1e-12)
    assert np.sqrt(m2 / n) == pytest.approx(whole[STD], rel=1e-12)


def test_compaction_at_an_offset() -> None:
    out = np.zeros(6)
    assert compact_finite(np.array([1.0, np.nan, 2.0]), out, 3) == (2, 1, 0)
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, 1.0, 2.0, 0.0])


def test_summary_of_nothing_finite() -> None:
    for values in (np.empty(0), np.array([np.nan, np.inf, np.nan])):
        got = summarize(values)
        assert got[COUNT] == 0
        assert np.isnan(got[[MIN, MAX, MEAN, STD]]).all()


def test_summary_of_constant_column_has_zero_std() -> None:
    got = summarize(np.full(1001, 0.1))
    assert got[STD] == pytest.approx(0.0, abs=1e-15)
    assert got[MEAN] == pytest.approx(0.1, rel=1e-15)


@pytest.mark.parametrize("chunks", [1, 2, 7, 64])
def test_parallel_summary_agrees_with_serial(chunks: int) -> None:
    values = _messy(20_000, 7)
    np.testing.assert_allclose(summarize_parallel(values, chunks), summarize(values), rtol=1e-12)
