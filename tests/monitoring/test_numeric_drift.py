import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, wasserstein_distance

from server.monitoring.drift import DriftRule, numeric_drift
from server.monitoring.profile import numeric_profile

DECILES = np.arange(1, 10) / 10
RULE = DriftRule()


def _oracle(ref: np.ndarray, cur: np.ndarray) -> dict[str, float]:
    r = ref[np.isfinite(ref)]
    c = cur[np.isfinite(cur)]
    edges = np.quantile(r, DECILES)
    p = np.bincount(np.searchsorted(edges, r, side="right"), minlength=10) / r.size
    q = np.bincount(np.searchsorted(edges, c, side="right"), minlength=10) / c.size
    p0, q0 = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    ks = ks_2samp(r, c)
    return {
        "psi": float(np.sum((q0 - p0) * np.log(q0 / p0))),
        "js": float(jensenshannon(p, q, base=2)),
        "ks": float(ks.statistic),
        "ks_p_value": float(ks.pvalue),
        "wasserstein_normed": wasserstein_distance(r, c) / r.std(),
        "null_rate_delta": np.isnan(cur).mean() - np.isnan(ref).mean(),
        "out_of_range_rate": float(
            np.mean((cur[~np.isnan(cur)] < r.min()) | (cur[~np.isnan(cur)] > r.max()))
        ),
    }


def _check(ref: np.ndarray, cur: np.ndarray) -> None:
    result = numeric_drift(numeric_profile([ref], 10**6, 0), [cur], RULE)
    for key, want in _oracle(ref, cur).items():
        assert result.statistics[key] == pytest.approx(want, rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize(("n", "m", "shift"), [(3000, 2000, 0.0), (3000, 500, 0.4), (20, 7, 1.0)])
def test_statistics_match_scipy(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    ref = rng.standard_normal(n)
    cur = rng.standard_normal(m) + shift
    ref[::11] = np.nan
    cur[::5] = np.nan
    _check(ref, cur)


def test_ties_match_scipy() -> None:
    rng = np.random.default_rng(1)
    _check(rng.integers(0, 5, 4000).astype(float), rng.integers(0, 7, 3000).astype(float))


def test_large_window_p_value_is_kolmogorovs_limit() -> None:
    rng = np.random.default_rng(2)
    ref, cur = rng.standard_normal(30_000), rng.standard_normal(12_000) + 0.02
    result = numeric_drift(numeric_profile([ref], 10**6, 0), [cur], RULE)
    want = ks_2samp(ref, cur).pvalue  # scipy's 'auto' is 'asymp' here too
    # en = 8571 > EXACT_KOLMOGOROV_MAX_N: the limit, about 1/sqrt(en) off scipy's kstwo.
    assert result.statistics["ks_p_value"] == pytest.approx(want, rel=0.01)


def test_infinities_are_out_of_range_and_not_in_the_distribution() -> None:
    ref = np.arange(100.0)
    cur = np.array([np.inf, -np.inf, 5.0, 50.0, 500.0])
    result = numeric_drift(numeric_profile([ref], 1000, 0), [cur], RULE)
    assert result.statistics["out_of_range_rate"] == pytest.approx(3 / 5)
    finite = cur[np.isfinite(cur)]
    assert result.statistics["ks"] == pytest.approx(ks_2samp(ref, finite).statistic)


def test_constant_reference() -> None:
    same = numeric_drift(numeric_profile([np.full(50, 2.0)], 100, 0), [np.full(30, 2.0)], RULE)
    assert same.statistics["wasserstein_normed"] == 0.0
    moved = numeric_drift(numeric_profile([np.full(50, 2.0)], 100, 0), [np.full(30, 3.0)], RULE)
    assert math.isinf(moved.statistics["wasserstein_normed"])
    assert moved.drifted is True


def test_all_null_and_empty_current_have_no_verdict() -> None:
    profile = numeric_profile([np.arange(10.0)], 100, 0)
    nulls = numeric_drift(profile, [np.full(4, np.nan)], RULE)
    assert nulls.drifted is None and nulls.error == "current has no finite values"
    assert nulls.statistics["null_rate_delta"] == 1.0
    empty = numeric_drift(profile, [], RULE)
    assert empty.drifted is None and empty.error == "current is empty"


def test_all_null_reference_has_no_verdict() -> None:
    result = numeric_drift(numeric_profile([np.full(5, np.nan)], 100, 0), [np.arange(3.0)], RULE)
    assert result.drifted is None
    assert result.error == "reference has no finite values"


def test_chunks_and_integers_are_gathered() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.standard_normal(900), rng.standard_normal(700)
    whole = numeric_drift(numeric_profile([ref], 1000, 0), [cur], RULE)
    parts = numeric_drift(
        numeric_profile(np.array_split(ref, 4), 1000, 0), np.array_split(cur, 3), RULE
    )
    assert whole.statistics == parts.statistics
