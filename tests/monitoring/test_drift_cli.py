import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from server.drift_cli import add_drift_parser


def _sluice(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sluice")
    add_drift_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["drift", *argv])
    code: int = args.run(args)
    return code


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    reference = tmp_path / "reference.parquet"
    current = tmp_path / "current.arrow"
    pq.write_table(pa.table({"a": rng.standard_normal(3000), "b": rng.random(3000)}), reference)
    moved = pa.table({"a": rng.standard_normal(2000) + 1, "b": rng.random(2000)})
    feather.write_feather(moved, current)
    return reference, current


def test_compare_writes_json_and_html(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, current = data
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code = _sluice(str(reference), str(current), "--json", str(out_json), "--html", str(out_html))
    assert code == 0
    body = json.loads(out_json.read_text())
    assert body["features"]["a"]["drifted"] is True
    assert body["features"]["b"]["drifted"] is False
    assert body["dataset_drifted"] is True
    assert out_html.read_text().startswith("<!DOCTYPE html>")
    assert "DRIFT" in capsys.readouterr().out


def test_baseline_then_compare(data: tuple[Path, Path], tmp_path: Path) -> None:
    reference, current = data
    saved = tmp_path / "model.baseline"
    assert _sluice("baseline", str(reference), "--output", str(saved)) == 0
    out = tmp_path / "r.json"
    assert _sluice(str(saved), str(current), "--features", "b", "--json", str(out)) == 0
    assert list(json.loads(out.read_text())["features"]) == ["b"]


def test_fail_on_drift(data: tuple[Path, Path]) -> None:
    reference, current = data
    assert _sluice(str(reference), str(current), "--fail-on-drift") == 1


def test_bad_input_is_one_line_and_exit_2(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, _ = data
    assert _sluice(str(reference), str(tmp_path / "missing.parquet")) == 2
    assert "no such file" in capsys.readouterr().err
    assert _sluice("baseline", str(reference)) == 2
    assert "--output" in capsys.readouterr().err
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    assert _sluice(str(reference), str(garbage)) == 2
    assert "cannot read" in capsys.readouterr().err


def test_empty_current(data: tuple[Path, Path], tmp_path: Path) -> None:
    reference, _ = data
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"a": pa.array([], type=pa.float64())}), empty)
    out = tmp_path / "r.json"
    assert _sluice(str(reference), str(empty), "--json", str(out)) == 0
    body = json.loads(out.read_text())
    assert body["features"]["a"]["error"] == "current is empty"
    assert body["drift_share"] is None and body["dataset_drifted"] is False


def test_unwritable_output(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, current = data
    target = tmp_path / "no" / "such" / "dir" / "r.json"
    assert _sluice(str(reference), str(current), "--json", str(target)) == 2
    assert "cannot write" in capsys.readouterr().err


def test_directory_datasets(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name, shift in (("reference", 0.0), ("current", 2.0)):
        folder = tmp_path / name
        folder.mkdir()
        for part in range(2):
            table = pa.table({"a": rng.standard_normal(1500) + shift})
            pq.write_table(table, folder / f"part-{part}.parquet")
    out = tmp_path / "r.json"
    code = _sluice(str(tmp_path / "reference"), str(tmp_path / "current"), "--json", str(out))
    assert code == 0
    body = json.loads(out.read_text())
    assert body["features"]["a"]["reference_rows"] == 3000
    assert body["features"]["a"]["drifted"] is True
