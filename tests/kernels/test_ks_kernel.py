import warnings

import numpy as np
import pytest
from scipy.stats import ks_2samp, wasserstein_distance

from kernels.ks import ks_wasserstein_sorted


def _check(a: np.ndarray, b: np.ndarray) -> None:
    d, w = ks_wasserstein_sorted(np.sort(a), np.sort(b))
    with warnings.catch_warnings():  # scipy's p-value warns for tiny samples; only D is used
        warnings.simplefilter("ignore", RuntimeWarning)
        statistic = ks_2samp(a, b, method="asymp").statistic
    assert d == pytest.approx(statistic, rel=1e-9, abs=1e-12)
    assert w == pytest.approx(wasserstein_distance(a, b), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("n", "m"), [(1, 1), (1, 5), (3, 2), (50, 70), (1000, 20), (20_000, 30_000)]
)
def test_ks_and_w1_match_scipy(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 7 + m)
    _check(rng.standard_normal(n), rng.normal(0.2, 1.3, m))


def test_ties_across_and_within_samples() -> None:
    rng = np.random.default_rng(4)
    _check(rng.integers(0, 6, 500).astype(float), rng.integers(1, 8, 300).astype(float))


def test_constant_samples() -> None:
    _check(np.full(10, 2.0), np.full(7, 2.0))
    _check(np.full(10, 2.0), np.full(7, 3.5))


def test_identical_samples_have_zero_distance() -> None:
    a = np.sort(np.random.default_rng(5).standard_normal(100))
    assert ks_wasserstein_sorted(a, a) == (0.0, 0.0)


def test_empty_sample_gives_nan() -> None:
    d, w = ks_wasserstein_sorted(np.empty(0), np.ones(3))
    assert np.isnan(d)
    assert np.isnan(w)


def test_many_small_random_cases_with_ties() -> None:
    rng = np.random.default_rng(6)
    for _ in range(300):
        n, m = rng.integers(1, 12, 2)
        spread = rng.integers(1, 6)
        _check(rng.integers(0, spread, n).astype(float), rng.integers(0, spread + 1, m) + 0.0)
