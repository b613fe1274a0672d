"""Online drift windows and verdicts against the offline report and scipy."""

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.stats

from server.monitoring.alerts import DETECTED, RESOLVED, FeatureAlert
from server.monitoring.baseline import Baseline, BaselineOptions, build_baseline
from server.monitoring.drift import DriftRule
from server.monitoring.features import FeatureSource
from server.monitoring.online import OnlineDrift, benjamini_hochberg
from server.monitoring.profile import CategoricalProfile, NumericProfile
from server.monitoring.report import compare
from server.monitoring.window import CategoryWindow, TensorWindow
from server.settings import DriftConfig

FEATURES = [f"f{i}" for i in range(20)]


def _baseline(rows: int = 20_000, seed: int = 0) -> Baseline:
    rng = np.random.default_rng(seed)
    return build_baseline(
        pa.table({name: rng.standard_normal(rows) for name in FEATURES}), BaselineOptions()
    )


def _online(baseline: Baseline, **config: object) -> OnlineDrift:
    settings = DriftConfig(enabled=True, baseline="b.npz", **config)  # type: ignore[arg-type]
    sources = [FeatureSource(name, "x", j, len(FEATURES)) for j, name in enumerate(FEATURES)]
    profiles = {n: p for n, p in baseline.profiles.items() if isinstance(p, NumericProfile)}
    return OnlineDrift(sources, profiles, settings, {})


def _rows(rng: np.random.Generator, n: int, shifted: tuple[int, ...] = ()) -> np.ndarray:
    data = rng.standard_normal((n, len(FEATURES)))
    for j in shifted:
        data[:, j] += 0.5
    return data


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(3).random(50) ** 3
    assert np.allclose(benjamini_hochberg(p), scipy.stats.false_discovery_control(p), atol=1e-15)


def test_window_statistics_equal_the_offline_report() -> None:
    baseline = _baseline()
    online = _online(baseline, window_seconds=60, evaluate_every_s=10, min_rows=10)
    rng = np.random.default_rng(1)
    chunks = [_rows(rng, 300, shifted=(2,)) for _ in range(5)]
    chunks[1][3, 4] = np.nan
    chunks[2][5, 6] = np.inf
    for i, chunk in enumerate(chunks):  # spread over three slices of the window
        online.add({"x": [chunk]}, now=100.0 + 10 * (i % 3))
    evaluation = online.evaluate(now=125.0)
    whole = np.concatenate(chunks)
    offline = compare(
        baseline,
        pa.table({n: whole[:, j] for j, n in enumerate(FEATURES)}),
        DriftRule(),
        BaselineOptions(),
    )
    for name in FEATURES:
        got = evaluation.report.features[name].statistics
        want = offline.features[name].statistics
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-12), (name, key)
    assert evaluation.window_rows == 1500


def test_old_slices_leave_the_window() -> None:
    online = _online(_baseline(), window_seconds=30, evaluate_every_s=10, min_rows=10)
    rng = np.random.default_rng(2)
    online.add({"x": [_rows(rng, 100)]}, now=0.0)
    online.add({"x": [_rows(rng, 50)]}, now=25.0)
    assert online.evaluate(now=25.0).window_rows == 150
    assert online.evaluate(now=31.0).window_rows == 50  # slice 0 is older than 30 s
    assert online.evaluate(now=100.0).window_rows == 0


def test_reservoir_bounds_memory_and_counts_stay_exact() -> None:
    profile = _baseline().profiles["f0"]
    assert isinstance(profile, NumericProfile)
    window = TensorWindow([profile, profile], [1, 0], slices=2, reservoir_rows=1000)
    rng = np.random.default_rng(4)
    values = rng.standard_normal((200_000, 2)) + 3.0
    values[::10, 0] = np.nan  # column 0 is the second feature
    for chunk in np.split(values.astype(np.float32), 20):
        window.add(chunk, 7)
    second, first = window.views(7)[1], window.views(7)[0]
    assert first.sorted_sample.shape == (500,) and first.saturated
    assert first.finite == 200_000 and second.finite == 180_000 and second.nulls == 20_000
    assert 400 < second.sorted_sample.shape[0] < 500  # the kept rows' finite values
    want = values.astype(np.float32).astype(np.float64)[:, 1]
    expected = np.bincount(np.searchsorted(profile.edges, want, side="right"), minlength=10)
    assert np.array_equal(first.bins, expected)
    # A uniform sample of the slice: its mean is within a few standard errors of the data's.
    assert abs(first.sorted_sample.mean() - want.mean()) < 5 / math.sqrt(500)


def test_the_reservoir_is_a_uniform_sample_of_the_slice() -> None:
    """Whatever the chunking, every position of the stream is equally likely to be kept: the
    kept positions of 300 slices, pooled, pass scipy's KS test against the uniform law, and
    the first and second halves of the stream are kept alike (Algorithm L's skips are exact,
    not an approximation that favours early or late values). Rows are kept whole."""
    profile = _baseline().profiles["f0"]
    assert isinstance(profile, NumericProfile)
    n, cap = 20_000, 50
    positions = np.arange(n, dtype=np.float64)
    rows = np.stack([positions, -positions], axis=1)
    kept = []
    for trial in range(300):
        window = TensorWindow([profile, profile], [0, 1], slices=1, reservoir_rows=cap, seed=trial)
        sizes = np.random.default_rng(trial).integers(1, 700, size=200)
        for chunk in np.split(rows, np.cumsum(sizes)[np.cumsum(sizes) < n]):
            window.add(chunk, 0)
        first, second = window.views(0)
        sample = first.sorted_sample
        assert sample.shape == (cap,) and np.unique(sample).shape == (cap,)
        assert np.array_equal(np.sort(-second.sorted_sample), sample)
        kept.append(sample)
    pooled = np.concatenate(kept)
    assert scipy.stats.kstest(pooled, scipy.stats.uniform(0, n).cdf).pvalue > 1e-3
    early = np.count_nonzero(pooled < n / 2)
    assert abs(early - pooled.shape[0] / 2) < 4 * math.sqrt(pooled.shape[0] / 4)


def test_small_windows_decide_by_adjusted_ks_p_values() -> None:
    online = _online(_baseline(), min_rows=50, small_sample_rows=1000)
    rng = np.random.default_rng(5)
    online.add({"x": [_rows(rng, 400, shifted=(3,))]}, now=0.0)
    evaluation = online.evaluate(now=0.0)
    raw = [evaluation.report.features[n].statistics["ks_p_value"] for n in FEATURES]
    adjusted = scipy.stats.false_discovery_control(raw)
    for j, name in enumerate(FEATURES):
        verdict = evaluation.verdicts[name]
        assert verdict.statistic == "ks_p_value_bh"
        assert math.isclose(verdict.value, adjusted[j], rel_tol=1e-12)
        assert verdict.breach == (adjusted[j] < 0.05)
    assert evaluation.verdicts["f3"].breach is True


def test_too_few_rows_is_insufficient_data_not_an_alarm() -> None:
    online = _online(_baseline(), min_rows=500)
    online.add({"x": [_rows(np.random.default_rng(6), 100, shifted=(0,))]}, now=0.0)
    evaluation = online.evaluate(now=0.0)
    assert evaluation.verdicts["f0"].breach is None
    assert evaluation.report.features["f0"].error is not None


def test_alert_fires_after_k_of_m_and_resolves_after_clean_runs() -> None:
    alert = FeatureAlert(alert_after=2, alert_window=3, resolve_after=2)
    changes = [alert.update(b) for b in (None, True, False, True, True, None, False, False)]
    assert changes == [None, None, None, DETECTED, None, None, None, RESOLVED]
    assert alert.state == "resolved"
    assert alert.update(False) is None and alert.state == "ok"
    assert alert.update(True) is None and alert.state == "pending"


def _states(
    online: OnlineDrift, alerts: dict[str, FeatureAlert], evaluation_now: float
) -> set[str]:
    evaluation = online.evaluate(evaluation_now)
    for name, verdict in evaluation.verdicts.items():
        alerts[name].update(verdict.breach)
    return {name for name, alert in alerts.items() if alert.state == "firing"}


@pytest.mark.parametrize("rows_per_window", [600, 5000])  # p-value and threshold regimes
def test_shift_fires_exactly_the_shifted_features_then_resolves(rows_per_window: int) -> None:
    online = _online(
        _baseline(),
        window_seconds=10,
        evaluate_every_s=10,
        min_rows=100,
        statistics=("psi", "wasserstein_normed"),
    )
    alerts = {n: FeatureAlert(3, 3, 2) for n in FEATURES}
    rng = np.random.default_rng(7)
    history = []
    for window in range(8):
        shifted = (1, 7, 13) if window < 4 else ()
        online.add({"x": [_rows(rng, rows_per_window, shifted)]}, now=10.0 * window)
        history.append(_states(online, alerts, 10.0 * window + 5))
    assert history[:2] == [set(), set()]  # k = 3: not after one or two windows
    assert history[2] == history[3] == {"f1", "f7", "f13"}
    assert history[4] == {"f1", "f7", "f13"}  # the first clean window
    assert history[5] == set()  # resolved after two clean windows
    assert {a.state for a in alerts.values()} <= {"ok", "resolved"}


def test_quiet_data_raises_no_alarm_over_many_windows() -> None:
    """False-alarm rate of the whole rule on unshifted data: 20 features x 100 windows."""
    online = _online(
        _baseline(),
        window_seconds=10,
        evaluate_every_s=10,
        min_rows=100,
        alert_after=2,
        alert_window=3,
    )
    alerts = {n: FeatureAlert(2, 3, 2) for n in FEATURES}
    rng = np.random.default_rng(8)
    breaches = fired = 0
    for window in range(100):
        online.add({"x": [_rows(rng, 500)]}, now=10.0 * window)
        evaluation = online.evaluate(10.0 * window + 5)
        for name, verdict in evaluation.verdicts.items():
            breaches += bool(verdict.breach)
            fired += alerts[name].update(verdict.breach) == DETECTED
    # Unadjusted, p < 0.05 would breach ~100 times in 2000 tests; BH keeps the family-wise
    # rate near 5% of windows, and 2-of-3 makes a firing alert rarer still.
    assert breaches <= 10
    assert fired == 0


def test_a_report_survives_its_json_and_bad_json_is_refused() -> None:
    from server.errors import InvalidInput
    from server.monitoring.report import report_from_json, report_json

    rng = np.random.default_rng(9)
    current = pa.table({n: rng.standard_normal(300) + (n == "f2") for n in FEATURES})
    current = current.append_column("colour", pa.array(["red"] * 300))
    reference = pa.table({n: rng.standard_normal(300) for n in FEATURES}).append_column(
        "colour", pa.array(["red", "blue"] * 150)
    )
    body = report_json(compare(reference, current, DriftRule(), BaselineOptions()))
    assert report_json(report_from_json(body)) == body
    with pytest.raises(InvalidInput, match="not a drift report"):
        report_from_json({"features": {"x": {"kind": "numeric"}}})


COLOURS = ["red", "green", "blue", "black"]


def _colours(rng: np.random.Generator, n: int, shares: list[float]) -> np.ndarray:
    picked = rng.choice(len(COLOURS), size=n, p=shares)
    return np.array([COLOURS[i].encode() for i in picked], dtype=np.object_).reshape(n, 1)


def _categorical_online(**config: object) -> tuple[OnlineDrift, Baseline]:
    rng = np.random.default_rng(11)
    reference = pa.table(
        {"colour": [COLOURS[i] for i in rng.choice(4, size=20_000, p=[0.4, 0.3, 0.2, 0.1])]}
    )
    baseline = build_baseline(reference, BaselineOptions())
    profile = baseline.profiles["colour"]
    assert isinstance(profile, CategoricalProfile)
    settings = DriftConfig(enabled=True, baseline="b.npz", **config)  # type: ignore[arg-type]
    return OnlineDrift((), {}, settings, {}, {"colour": profile}), baseline


def test_a_categorical_input_is_watched_and_equals_the_offline_report() -> None:
    """BYTES values of an input named like a categorical baseline feature: the window's
    statistics are those of `sluice drift` over the same rows, and a shifted mix fires."""
    online, baseline = _categorical_online(min_rows=100)
    rng = np.random.default_rng(12)
    chunks = [_colours(rng, 700, [0.1, 0.2, 0.3, 0.4]) for _ in range(4)]
    for chunk in chunks:
        online.add({"colour": [chunk[:300], chunk[300:]]}, now=50.0)
    evaluation = online.evaluate(now=55.0)
    rows = [v.decode() for v in np.concatenate(chunks).reshape(-1)]
    offline = compare(baseline, pa.table({"colour": rows}), DriftRule(), BaselineOptions())
    got = evaluation.report.features["colour"]
    want = offline.features["colour"]
    assert got.kind == "categorical" and got.statistics.keys() == want.statistics.keys()
    for key, value in want.statistics.items():
        assert math.isclose(got.statistics[key], value, rel_tol=1e-9, abs_tol=1e-12), key
    verdict = evaluation.verdicts["colour"]
    assert verdict.statistic == "js" and verdict.breach is True and verdict.threshold == 0.1
    assert evaluation.window_rows == 2800


def test_a_small_categorical_window_joins_the_p_value_pool() -> None:
    online, _ = _categorical_online(min_rows=50, small_sample_rows=1000)
    rng = np.random.default_rng(13)
    online.add({"colour": [_colours(rng, 400, [0.4, 0.3, 0.2, 0.1])]}, now=0.0)
    evaluation = online.evaluate(now=0.0)
    verdict = evaluation.verdicts["colour"]
    p = evaluation.report.features["colour"].statistics["chi2_p_value"]
    assert verdict.statistic == "chi2_p_value_bh" and math.isclose(verdict.value, p)
    assert verdict.breach is False  # the reference's own mix: no alarm
    online.add({"colour": [_colours(rng, 40, [0.0, 0.0, 0.0, 1.0])]}, now=0.0)
    assert online.evaluate(now=0.0).verdicts["colour"].breach is True


def test_endless_new_categories_are_pooled_not_kept() -> None:
    window = CategoryWindow(slices=1, max_categories=50)
    for start in range(0, 100_000, 10_000):
        values = np.array([f"u{i}".encode() for i in range(start, start + 10_000)], np.object_)
        window.add(values, 0)
    view = window.view(0)
    assert len(view.counts) == 51 and view.counts["(other)"] == 100_000 - 50
    assert view.rows == 100_000 and sum(view.counts.values()) == 100_000
