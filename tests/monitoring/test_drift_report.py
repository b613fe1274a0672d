import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow as pa
import pytest

from server.errors import InvalidInput
from server.monitoring.baseline import BaselineOptions, build_baseline
from server.monitoring.drift import DriftRule
from server.monitoring.html import histogram_svg, render_html
from server.monitoring.report import compare, report_json
from server.monitoring.table import format_table

OPTIONS = BaselineOptions(threads=2)


def _reference() -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "x": rng.standard_normal(3000),
            "gone": rng.standard_normal(3000),
            "<b>&name": rng.standard_normal(3000),
            "colour": pa.array(rng.choice(["red", "blue"], 3000)).dictionary_encode(),
            "flag": pa.array(rng.random(3000) < 0.5),
        }
    )


def _current() -> pa.Table:
    rng = np.random.default_rng(1)
    return pa.table(
        {
            "x": rng.standard_normal(2000) + 1.0,
            "<b>&name": pa.array([None] * 2000, type=pa.float64()),
            "colour": pa.array(rng.choice(["red", "green"], 2000)),
            "flag": pa.array(rng.choice(["yes", "no"], 2000)),
        }
    )


def test_raw_reference_and_baseline_give_the_same_report() -> None:
    raw = compare(_reference(), _current(), DriftRule(), OPTIONS)
    saved = compare(build_baseline(_reference(), OPTIONS), _current(), DriftRule(), OPTIONS)
    assert report_json(raw) == report_json(saved)


def test_problems_are_reported_per_feature() -> None:
    report = compare(_reference(), _current(), DriftRule(), OPTIONS, ["x", "gone", "nope"])
    assert report.features["gone"].error == "missing from current data"
    assert report.features["nope"].error == "missing from current data"
    assert report.features["x"].drifted is True
    assert report.drift_share == 1.0


def test_type_change_and_all_null_current() -> None:
    report = compare(_reference(), _current(), DriftRule(), OPTIONS)
    assert report.features["<b>&name"].error == "current has no finite values"
    assert report.features["flag"].drifted is True  # booleans compare as categories
    assert report.features["colour"].statistics["unseen_rate"] == pytest.approx(
        np.mean(_current().column("colour").to_numpy(zero_copy_only=False) == "green")
    )


def test_json_shape_and_nulls() -> None:
    body = report_json(compare(_reference(), _current(), DriftRule(), OPTIONS))
    text = json.dumps(body, allow_nan=False)  # NaN and inf never reach the JSON
    assert set(json.loads(text)) == {"features", "drift_share", "dataset_drifted", "skipped"}
    x = body["features"]["x"]
    numeric = {"psi", "js", "ks", "ks_p_value", "wasserstein_normed", "null_rate_delta"}
    assert numeric | {"out_of_range_rate", "drifted"} <= set(x)
    colour = body["features"]["colour"]
    assert {"chi2", "chi2_p_value", "js", "linf", "unseen_rate", "null_rate_delta"} <= set(colour)
    assert body["features"]["<b>&name"]["psi"] is None
    assert isinstance(body["drift_share"], float) and not math.isnan(body["drift_share"])


def test_table_and_html() -> None:
    report = compare(_reference(), _current(), DriftRule(), OPTIONS)
    table = format_table(report)
    assert "DRIFT" in table and "dataset: DRIFTED" in table
    page = render_html(report)
    assert page.count("<svg") == 3  # x, colour, flag have histograms
    assert "&lt;b&gt;&amp;name" in page and "<b>&name" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_histogram_svg_is_well_formed() -> None:
    report = compare(_reference(), _current(), DriftRule(), OPTIONS)
    histogram = report.features["x"].histogram
    assert histogram is not None
    ET.fromstring(histogram_svg(histogram))


def test_nothing_to_compare() -> None:
    with pytest.raises(InvalidInput):
        compare(
            pa.table({"t": pa.array([1], type=pa.timestamp("s"))}),
            pa.table({}),
            DriftRule(),
            OPTIONS,
        )


def test_empty_reference_and_empty_current() -> None:
    empty = pa.table({"x": pa.array([], pa.float64()), "colour": pa.array([], pa.string())})
    report = compare(empty, _current(), DriftRule(), OPTIONS)
    assert report.features["x"].error == "reference has no finite values"
    assert report.features["colour"].error == "reference has no non-null values"
    report = compare(_reference(), empty, DriftRule(), OPTIONS, ["x", "colour"])
    assert report.features["x"].error == "current is empty"
    assert report.features["colour"].error == "current is empty"
    assert report.dataset_drifted is False


def test_odd_types_never_crash() -> None:
    n = 300
    reference = pa.table(
        {
            "huge": pa.array(np.full(n, 2**63 + 5, dtype=np.uint64)),
            "f32": pa.array(np.arange(n, dtype=np.float32)),
            "inf": np.full(n, np.inf),
            "codes": pa.array(np.arange(n) % 3).dictionary_encode(),
            "blob": pa.array([b"x"] * n),
        }
    )
    current = pa.table(
        {
            "huge": pa.array(np.full(n, 7, dtype=np.uint64)),
            "f32": pa.array(np.arange(n, dtype=np.float32) + 0.5),
            "inf": np.full(n, -np.inf),
            "codes": pa.array(np.arange(n) % 4).dictionary_encode(),
            "blob": pa.array(np.ones(n)),
        }
    )
    report = compare(reference, current, DriftRule(), OPTIONS)
    assert report.features["huge"].drifted is True
    assert report.features["f32"].drifted is False
    assert report.features["inf"].error == "reference has no finite values"
    assert report.features["codes"].statistics["unseen_rate"] == pytest.approx(0.25, abs=0.01)
    assert "blob" in report.skipped
    json.dumps(report_json(report), allow_nan=False)
