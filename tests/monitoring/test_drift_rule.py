import numpy as np
import pyarrow as pa
import pytest

from server.errors import ConfigError
from server.monitoring.baseline import BaselineOptions
from server.monitoring.drift import DriftRule
from server.monitoring.report import compare

OPTIONS = BaselineOptions(threads=2)


def _tables(n_ref: int, n_cur: int, shifts: dict[str, float]) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(n_ref + n_cur)
    reference = pa.table({name: rng.standard_normal(n_ref) for name in shifts})
    current = pa.table({name: rng.standard_normal(n_cur) + s for name, s in shifts.items()})
    return reference, current


def test_large_windows_flag_shifted_features_only() -> None:
    shifts = {"same": 0.0, "same2": 0.0, "moved": 0.5, "moved2": -0.3}
    report = compare(*_tables(20_000, 5000, shifts), DriftRule(), OPTIONS)
    verdicts = {name: r.drifted for name, r in report.features.items()}
    assert verdicts == {"same": False, "same2": False, "moved": True, "moved2": True}
    assert report.features["moved"].rule == "wasserstein_normed >= 0.1"
    assert report.drift_share == 0.5
    assert report.dataset_drifted is True


def test_small_windows_use_the_ks_p_value() -> None:
    report = compare(*_tables(20_000, 400, {"same": 0.0, "moved": 0.5}), DriftRule(), OPTIONS)
    assert report.features["same"].drifted is False
    assert report.features["moved"].drifted is True
    assert report.features["moved"].rule == "ks_p_value < 0.05"
    assert report.dataset_drifted is True


def test_below_the_share_the_dataset_does_not_drift() -> None:
    shifts = {"a": 0.0, "b": 0.0, "c": 0.0, "d": 1.0}
    report = compare(*_tables(5000, 5000, shifts), DriftRule(), OPTIONS)
    assert report.drift_share == 0.25
    assert report.dataset_drifted is False


def test_configurable_statistic_and_threshold() -> None:
    tables = _tables(5000, 5000, {"x": 0.15})
    assert compare(*tables, DriftRule(), OPTIONS).features["x"].drifted is True
    loose = DriftRule(numeric_statistic="psi", numeric_threshold=0.25)
    result = compare(*tables, loose, OPTIONS).features["x"]
    assert result.rule == "psi >= 0.25"
    assert result.drifted is False


def test_rule_is_validated() -> None:
    with pytest.raises(ConfigError):
        DriftRule(p_value_threshold=1.5)
    with pytest.raises(ConfigError):
        DriftRule(numeric_statistic="mean")  # type: ignore[arg-type]
