"""A ``score`` step on Ray Data gives the local engine's predictions and is reused after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from server.pipeline import RunOptions, run_pipeline

from .conftest import cache
from .test_pipeline_kinds import EXAMPLES

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]

STEP = """
[steps.{name}]
kind = "score"
engine = "{engine}"
keep = ["id"]
features = ["x0", "x1", "x2", "x3"]
inputs = {{ model = "model.onnx", data = "live.parquet" }}
outputs = {{ scored = "out/{name}" }}
"""


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_score_step_matches_local(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("example_make_data", EXAMPLES / "make_data.py")
    assert spec is not None and spec.loader is not None
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    names = {"model": "model.onnx", "train": "train.parquet", "live": "live.parquet"}
    outputs = {name: tmp_path / file for name, file in names.items()}
    make_data.main({}, outputs, {"rows": 3000})
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(
        STEP.format(name="ray", engine="ray") + STEP.format(name="local", engine="local")
    )
    first = run_pipeline(pipeline, RunOptions())
    assert first["status"] == "succeeded", first
    assert first["steps"]["ray"]["result"]["engine"] == "ray"
    tables = {
        n: ds.dataset(tmp_path / "out" / n).to_table().sort_by("id") for n in ("ray", "local")
    }
    assert tables["ray"]["id"].to_pylist() == list(range(3000))
    np.testing.assert_allclose(
        np.stack(tables["ray"]["output"].to_numpy(zero_copy_only=False)),
        np.stack(tables["local"]["output"].to_numpy(zero_copy_only=False)),
        rtol=1e-6,
    )
    assert cache(run_pipeline(pipeline, RunOptions())) == {"ray": "hit", "local": "hit"}
