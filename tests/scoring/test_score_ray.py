"""The Ray Data engine on a local Ray (two CPUs), on small data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from server.scoring.policy import RowFailed
from server.scoring.progress import Summary

from .conftest import feature_table, matrix, read_output, reference, write

ray = pytest.importorskip("ray")
# Ray's own DataContext sets a deprecated field of itself on creation.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")
Run = Callable[..., Summary]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_predictions_equal_onnx_runtime(
    model_path: Path, inputs: Path, tmp_path: Path, run: Run
) -> None:
    summary = run(model_path, inputs, keep=("id",), engine="ray", batch_size=300)
    table = read_output(tmp_path / "out")
    source = ds.dataset(inputs).to_table().sort_by("id")
    expected = reference(model_path, {"input": matrix(source)})
    assert table["id"].to_pylist() == list(range(2100))
    np.testing.assert_allclose(
        np.stack(table["output"].to_numpy(zero_copy_only=False)), expected, rtol=1e-5, atol=1e-6
    )
    assert summary["rows_scored"] == 2100 and summary["files_scored"] == 3
    assert run(model_path, inputs, keep=("id",), engine="ray")["rows_scored"] == 0  # resumed


def test_ray_error_policies(model_path: Path, tmp_path: Path, run: Run) -> None:
    table = feature_table(40)
    f2 = pa.array([None if i in (5, 30) else 1.0 for i in range(40)], pa.float32())
    path = write(tmp_path / "in" / "a.parquet", table.set_column(3, "f2", f2))
    with pytest.raises(RowFailed, match=r"column 'f2' is null \(kept columns: \{'id': 5\}"):
        run(model_path, path, keep=("id",), engine="ray", output=tmp_path / "fail")
    summary = run(model_path, path, keep=("id",), engine="ray", on_error="skip")
    assert summary["rows_skipped"] == 2 and summary["rows_scored"] == 38
    errors = ds.dataset(tmp_path / "out" / "_errors").to_table().sort_by("id")
    assert errors["id"].to_pylist() == [5, 30]
    assert read_output(tmp_path / "out").num_rows == 38
