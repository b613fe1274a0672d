from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pytest

from benchmarks.models import mlp
from server.errors import ConfigError, InvalidInput
from server.scoring.local_engine import coalesce
from server.scoring.policy import RowFailed, TooManyErrors
from server.scoring.progress import Summary

from .conftest import FEATURES, feature_table, matrix, read_output, reference, write

Run = Callable[..., Summary]


def test_predictions_equal_onnx_runtime(model_path: Path, inputs: Path, run: Run) -> None:
    summary = run(model_path, inputs, keep=("id",), batch_size=100)
    table = read_output(Path(summary["output"]))
    source = ds.dataset(inputs).to_table().sort_by("id")
    expected = reference(model_path, {"input": matrix(source)})
    got = np.stack(table["output"].to_numpy(zero_copy_only=False))
    assert table.column_names == ["id", "output"]
    assert table["id"].to_pylist() == list(range(2100))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert summary["rows_read"] == summary["rows_scored"] == 2100
    assert summary["files_scored"] == 3


def test_rerun_resumes_and_scores_nothing_again(model_path: Path, inputs: Path, run: Run) -> None:
    run(model_path, inputs, keep=("id",))
    summary = run(model_path, inputs, keep=("id",))
    assert summary["files_resumed"] == 3 and summary["rows_scored"] == 0
    assert read_output(Path(summary["output"])).num_rows == 2100


def test_orphan_output_from_a_crash_is_not_duplicated(
    model_path: Path, inputs: Path, run: Run, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run(model_path, inputs, keep=("id",), output=out)
    # A crash after renaming an output but before recording it in the manifest.
    (out / "stray.parquet").write_bytes((out / "part-0.parquet").read_bytes())
    (out / ".part-1.parquet.tmp").write_bytes(b"partial")
    run(model_path, inputs, keep=("id",), output=out)
    assert read_output(out)["id"].to_pylist() == list(range(2100))
    assert not (out / "stray.parquet").exists()


def test_different_model_needs_overwrite(
    model_path: Path, two_input_model: Path, inputs: Path, run: Run, tmp_path: Path
) -> None:
    run(model_path, inputs, keep=("id",))
    other = tmp_path / "other.onnx"
    onnx.save(mlp((FEATURES, 16, 3), seed=2), str(other))
    with pytest.raises(ConfigError, match="different model"):
        run(other, inputs, keep=("id",))
    summary = run(other, inputs, keep=("id",), overwrite=True)
    assert summary["rows_scored"] == 2100


def test_overwrite_scores_the_same_job_afresh(model_path: Path, inputs: Path, run: Run) -> None:
    run(model_path, inputs, keep=("id",))
    summary = run(model_path, inputs, keep=("id",), overwrite=True)
    assert summary["files_scored"] == 3 and summary["rows_scored"] == 2100
    assert read_output(Path(summary["output"]))["id"].to_pylist() == list(range(2100))


def test_different_input_set_is_refused(model_path: Path, inputs: Path, run: Run) -> None:
    run(model_path, inputs / "part-0.parquet", keep=("id",))
    with pytest.raises(ConfigError, match="different input set: 2 added"):
        run(model_path, inputs, keep=("id",))


def test_foreign_directory_is_refused(
    model_path: Path, inputs: Path, run: Run, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a sluice score output"):
        run(model_path, inputs, keep=("id",), overwrite=True)


def test_empty_input_writes_an_empty_file(model_path: Path, tmp_path: Path, run: Run) -> None:
    path = write(tmp_path / "in" / "empty.parquet", feature_table(0))
    summary = run(model_path, path, keep=("id",))
    table = ds.dataset(tmp_path / "out").to_table()
    assert table.num_rows == 0 and table.column_names == ["id", "output"]
    assert summary["rows_read"] == 0


def test_arrow_ipc_input(model_path: Path, tmp_path: Path, run: Run) -> None:
    path = tmp_path / "in" / "rows.arrow"
    path.parent.mkdir()
    feather.write_feather(feature_table(50), path, compression="uncompressed")
    summary = run(model_path, path, keep=("id",))
    assert summary["rows_scored"] == 50
    assert read_output(tmp_path / "out").num_rows == 50


def test_nulls_fail_with_row_and_reason(model_path: Path, tmp_path: Path, run: Run) -> None:
    table = feature_table(20)
    f3 = pa.array([None if i == 7 else 1.0 for i in range(20)], pa.float32())
    path = write(tmp_path / "in" / "a.parquet", table.set_column(4, "f3", f3))
    with pytest.raises(RowFailed, match=r"a.parquet, row 7: column 'f3' is null"):
        run(model_path, path, keep=("id",))
    assert not list((tmp_path / "out").glob("*.parquet"))


def test_bad_rows_skip_to_errors_file(model_path: Path, tmp_path: Path, run: Run) -> None:
    table = feature_table(30)
    f0 = table["f0"].to_numpy().copy()
    f0[[3, 11]] = np.nan
    f5 = pa.array([None if i == 20 else 0.5 for i in range(30)], pa.float32())
    table = table.set_column(1, "f0", pa.array(f0)).set_column(6, "f5", f5)
    path = write(tmp_path / "in" / "a.parquet", table)
    summary = run(model_path, path, keep=("id",), on_error="skip", batch_size=8)
    assert summary["rows_skipped"] == 3 and summary["rows_scored"] == 27
    out = read_output(tmp_path / "out")
    assert sorted(set(range(30)) - set(out["id"].to_pylist())) == [3, 11, 20]
    errors = ds.dataset(tmp_path / "out" / "_errors").to_table()
    assert errors["row"].to_pylist() == [3, 11, 20]
    assert errors["id"].to_pylist() == [3, 11, 20]
    assert errors["reason"].to_pylist() == [
        "column 'f0' is NaN",
        "column 'f0' is NaN",
        "column 'f5' is null",
    ]


def test_max_errors_aborts(model_path: Path, tmp_path: Path, run: Run) -> None:
    table = feature_table(30)
    f1 = pa.array([None if i % 5 == 0 else 1.0 for i in range(30)], pa.float32())
    path = write(tmp_path / "in" / "a.parquet", table.set_column(2, "f1", f1))
    with pytest.raises(TooManyErrors, match="6 rows could not be scored, more than --max-errors 5"):
        run(model_path, path, keep=("id",), on_error="skip", max_errors=5)
    summary = run(model_path, path, keep=("id",), on_error="skip", max_errors=6)
    assert summary["rows_skipped"] == 6


def test_text_features_are_parsed(model_path: Path, tmp_path: Path, run: Run) -> None:
    table = feature_table(4)
    text = pa.array(["1.5", "oops", " 2", None])
    table = table.set_column(8, "f7", text)
    path = write(tmp_path / "in" / "a.parquet", table)
    features = tuple(f"f{j}" for j in range(FEATURES))
    run(model_path, path, keep=("id",), features=features, on_error="skip")
    errors = ds.dataset(tmp_path / "out" / "_errors").to_table()
    assert errors["reason"].to_pylist() == [
        "column 'f7': cannot parse 'oops' as a number",
        "column 'f7' is null",
    ]
    assert read_output(tmp_path / "out")["id"].to_pylist() == [0, 2]


def test_fixed_size_list_and_multi_input(two_input_model: Path, tmp_path: Path, run: Run) -> None:
    a = np.arange(5 * 6, dtype=np.float32).reshape(5, 6)
    nested = pa.FixedSizeListArray.from_arrays(
        pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), 3), 2
    )
    b = np.linspace(0, 1, 5)
    path = write(tmp_path / "in" / "t.parquet", pa.table({"k": list("abcde"), "a": nested, "b": b}))
    run(two_input_model, path, keep=("k",))
    out = ds.dataset(tmp_path / "out").to_table()
    expected = reference(two_input_model, {"a": a.reshape(5, 2, 3), "b": b})
    assert out.column_names == ["k", "out"]
    np.testing.assert_allclose(out["out"].to_numpy(), expected, rtol=1e-6)


def test_flat_fixed_size_list_reshapes(two_input_model: Path, tmp_path: Path, run: Run) -> None:
    a = np.ones((3, 6), dtype=np.float64)
    flat = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), 6)
    path = write(tmp_path / "in" / "t.parquet", pa.table({"a": flat, "b": [1.0, 2.0, 3.0]}))
    run(two_input_model, path)
    out = ds.dataset(tmp_path / "out").to_table()
    assert out["out"].to_pylist() == [23.0, 25.0, 27.0]


def test_missing_column_is_an_error_before_any_work(
    model_path: Path, inputs: Path, tmp_path: Path, run: Run
) -> None:
    with pytest.raises(InvalidInput, match="--features: column 'nope' is not in the input"):
        run(model_path, inputs, features=("f0", "nope"))
    assert not (tmp_path / "out").exists()


def test_later_file_missing_a_column_is_found_up_front(
    model_path: Path, inputs: Path, tmp_path: Path, run: Run
) -> None:
    write(inputs / "part-9.parquet", feature_table(5).drop_columns(["f2"]))
    with pytest.raises(InvalidInput, match=r"part-9\.parquet: column 'f2' is missing"):
        run(model_path, inputs, keep=("id",))
    assert not (tmp_path / "out").exists()


def test_unreadable_input_is_a_clear_error(model_path: Path, tmp_path: Path, run: Run) -> None:
    path = tmp_path / "in" / "broken.parquet"
    path.parent.mkdir()
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(InvalidInput, match=r"broken\.parquet: cannot read"):
        run(model_path, path)


def test_later_file_with_another_type_is_found_up_front(
    model_path: Path, inputs: Path, tmp_path: Path, run: Run
) -> None:
    table = feature_table(5)
    write(inputs / "part-9.parquet", table.set_column(3, "f2", pa.array([1.0] * 5, pa.float64())))
    with pytest.raises(InvalidInput, match="column 'f2' is double, but the first input has float"):
        run(model_path, inputs, keep=("id",))


def test_small_batches_are_coalesced() -> None:
    batches = [pa.record_batch({"x": list(range(n))}) for n in (3, 3, 3, 10, 1, 2)]
    sizes = [b.num_rows for b in coalesce(iter(batches), 8)]
    assert sizes == [9, 10, 3]
