from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from server.errors import ConfigError, InvalidInput
from server.monitoring.baseline import (
    BaselineOptions,
    build_baseline,
    is_baseline_file,
    load_baseline,
    save_baseline,
)
from server.monitoring.profile import CategoricalProfile, NumericProfile

DECILES = np.arange(1, 10) / 10


def _reference(n: int = 5000) -> pa.Table:
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, n)
    x[::17] = np.nan
    return pa.table(
        {
            "x": x,
            "k": pa.array(rng.integers(0, 5, n)),
            "city": pa.array(rng.choice(["oslo", "rome", "lima"], n)),
            "when": pa.array(np.arange(n).astype("datetime64[s]")),
        }
    )


def test_numeric_profile_matches_numpy() -> None:
    table = _reference()
    profile = build_baseline(table, BaselineOptions()).profiles["x"]
    assert isinstance(profile, NumericProfile)
    x = table.column("x").to_numpy()
    finite = x[np.isfinite(x)]
    np.testing.assert_array_equal(profile.edges, np.quantile(finite, DECILES))
    bins = np.bincount(np.searchsorted(profile.edges, finite, side="right"), minlength=10)
    np.testing.assert_allclose(profile.proportions, bins / finite.size, rtol=1e-15)
    np.testing.assert_array_equal(profile.sample, np.sort(finite))
    assert profile.null_rate == pytest.approx(np.isnan(x).mean())
    assert profile.std == pytest.approx(finite.std(), rel=1e-12)
    assert (profile.minimum, profile.maximum) == (finite.min(), finite.max())


def test_sample_beyond_cap_is_seeded_and_sorted() -> None:
    table = _reference()
    first = build_baseline(table, BaselineOptions(sample_cap=100, seed=3)).profiles["x"]
    again = build_baseline(table, BaselineOptions(sample_cap=100, seed=3)).profiles["x"]
    assert isinstance(first, NumericProfile) and isinstance(again, NumericProfile)
    assert first.sample.size == 100
    assert np.all(np.diff(first.sample) >= 0)
    np.testing.assert_array_equal(first.sample, again.sample)


def test_categories_and_unsupported_columns() -> None:
    baseline = build_baseline(_reference(), BaselineOptions())
    city = baseline.profiles["city"]
    assert isinstance(city, CategoricalProfile)
    assert set(city.categories) == {"oslo", "rome", "lima"}
    assert int(city.counts.sum()) == 5000
    assert "when" in baseline.skipped
    assert isinstance(baseline.profiles["k"], NumericProfile)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    baseline = build_baseline(_reference(), BaselineOptions())
    path = tmp_path / "model.baseline"
    save_baseline(baseline, path)
    assert is_baseline_file(str(path))
    loaded = load_baseline(str(path))
    assert list(loaded.profiles) == list(baseline.profiles)
    assert loaded.skipped == baseline.skipped
    for name, profile in baseline.profiles.items():
        other = loaded.profiles[name]
        for field in profile.__slots__:
            a, b = getattr(profile, field), getattr(other, field)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b)
            else:
                assert a == b or (a != a and b != b)  # NaN == NaN for all-null columns


def test_all_null_column_profiles_without_edges(tmp_path: Path) -> None:
    table = pa.table({"empty": pa.array([None, None, None], type=pa.float64())})
    baseline = build_baseline(table, BaselineOptions())
    save_baseline(baseline, tmp_path / "b")
    profile = load_baseline(str(tmp_path / "b")).profiles["empty"]
    assert isinstance(profile, NumericProfile)
    assert profile.count == 0 and profile.edges.size == 0 and profile.null_rate == 1.0


def test_not_a_baseline(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1 not really")
    assert not is_baseline_file(str(path))
    with pytest.raises(InvalidInput):
        load_baseline(str(path))


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError):
        BaselineOptions(sample_cap=0)


def test_chunked_column_with_nulls() -> None:
    chunks = [pa.array([1.0, None, 3.0]), pa.array([4.0, np.nan, 6.0]), pa.array([], pa.float64())]
    table = pa.table(
        {"x": pa.chunked_array(chunks), "i": pa.chunked_array([[1, None], [3, 5, None, 7]])}
    )
    profiles = build_baseline(table, BaselineOptions()).profiles
    x, i = profiles["x"], profiles["i"]
    assert isinstance(x, NumericProfile) and isinstance(i, NumericProfile)
    np.testing.assert_array_equal(x.sample, [1.0, 3.0, 4.0, 6.0])
    assert (x.nulls, x.rows) == (2, 6)
    np.testing.assert_array_equal(i.sample, [1.0, 3.0, 5.0, 7.0])
    assert i.mean == pytest.approx(4.0)
