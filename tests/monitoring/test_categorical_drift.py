import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from server.monitoring.drift import DriftRule, categorical_drift
from server.monitoring.profile import categorical_profile

RULE = DriftRule()


def test_statistics_match_scipy_with_new_and_missing_categories() -> None:
    reference = {"a": 500, "b": 300, "c": 200}
    current = {"a": 100, "b": 500, "d": 50}  # c gone, d new
    result = categorical_drift(categorical_profile(reference, 10, 1010), current, 5, RULE)
    names = ["a", "b", "c", "d"]
    ref = np.array([reference.get(k, 0) for k in names], dtype=float)
    cur = np.array([current.get(k, 0) for k in names], dtype=float)
    want = chi2_contingency(np.stack([ref, cur]), correction=False)
    stats = result.statistics
    assert stats["chi2"] == pytest.approx(want.statistic, rel=1e-10)
    assert stats["chi2_p_value"] == pytest.approx(want.pvalue, rel=1e-9, abs=1e-300)
    assert stats["js"] == pytest.approx(jensenshannon(ref, cur, base=2), rel=1e-12)
    assert stats["linf"] == pytest.approx(np.max(np.abs(ref / ref.sum() - cur / cur.sum())))
    assert stats["unseen_rate"] == pytest.approx(50 / 650)
    assert stats["null_rate_delta"] == pytest.approx(5 / 655 - 10 / 1010)


def test_small_sample_decides_by_p_value() -> None:
    profile = categorical_profile({"a": 5000, "b": 5000}, 0, 10_000)
    same = categorical_drift(profile, {"a": 48, "b": 52}, 0, RULE)
    assert same.rule == "chi2_p_value < 0.05" and same.drifted is False
    moved = categorical_drift(profile, {"a": 80, "b": 20}, 0, RULE)
    assert moved.drifted is True


def test_large_sample_decides_by_js() -> None:
    profile = categorical_profile({"a": 5000, "b": 5000}, 0, 10_000)
    result = categorical_drift(profile, {"a": 2600, "b": 2400}, 0, RULE)
    assert result.rule == "js >= 0.1"
    assert result.drifted is False  # significant by chi2, but too small to matter


def test_single_category_everywhere() -> None:
    result = categorical_drift(categorical_profile({"a": 10}, 0, 10), {"a": 5}, 0, RULE)
    assert result.statistics["chi2_p_value"] == 1.0
    assert result.drifted is False


def test_all_null_current_has_no_verdict() -> None:
    result = categorical_drift(categorical_profile({"a": 10}, 0, 10), {}, 7, RULE)
    assert result.drifted is None
    assert result.statistics["null_rate_delta"] == 1.0


def test_histogram_pools_the_tail() -> None:
    reference = {f"c{i}": 100 + i for i in range(30)}
    result = categorical_drift(categorical_profile(reference, 0, 3435), reference, 0, RULE)
    assert result.histogram is not None
    assert len(result.histogram.labels) == 21
    assert result.histogram.labels[-1] == "other (10)"
    assert sum(result.histogram.current) == pytest.approx(1.0)
