"""The built-in kinds through the example pipeline, and the metrics against scipy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from server.evaluation import METRICS
from server.pipeline import RunOptions, run_pipeline
from server.pipeline.explain import explain_step

from .conftest import cache

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    for name in ("score-pipeline.toml", "make_data.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return tmp_path / "score-pipeline.toml"


def run(path: Path, **params: str) -> dict[str, Any]:
    return run_pipeline(path, RunOptions(params={"rows": "2000", **params}, jobs=2))


@pytest.mark.slow
def test_example_pipeline_runs_then_is_reused(example: Path) -> None:
    first = run(example)
    assert first["status"] == "succeeded", first
    metrics = json.loads((example.parent / "work/metrics.json").read_text())
    assert metrics["metrics"]["accuracy"] > 0.75 and metrics["rows"] == 2000
    assert json.loads((example.parent / "work/validate.json").read_text())["passed"]
    assert not json.loads((example.parent / "work/drift.json").read_text())["dataset_drifted"]
    assert set(cache(run(example)).values()) == {"hit"}


@pytest.mark.slow
def test_drift_gate_stops_scoring(example: Path) -> None:
    summary = run(example, shift="1.0")
    assert summary["steps"]["drift"]["status"] == "failed"
    assert "the dataset drifted" in summary["steps"]["drift"]["error"]
    assert summary["steps"]["score"]["status"] == "skipped"
    assert summary["steps"]["evaluate"]["status"] == "skipped"
    assert not (example.parent / "work/scored").exists()


def test_validate_fails_with_its_report(example: Path) -> None:
    text = example.read_text().replace(
        "max_out_of_range_rate = 0.01", "max_out_of_range_rate = 0.01\nranges = { x0 = [-1, 1] }"
    )
    text = text.replace('after = ["validate", "drift"]', 'after = ["validate"]')
    example.write_text(text)
    summary = run(example)
    error = summary["steps"]["validate"]["error"]
    assert "column 'x0'" in error and "outside [-1, 1]" in error
    report = json.loads(Path(error.rpartition("report in ")[2].rstrip(")")).read_text())
    assert 0.2 < report["columns"]["x0"]["out_of_range_rate"] < 0.4  # P(|N(0,1)| > 1) = 0.32
    assert summary["steps"]["score"]["status"] == "skipped"


def test_validate_against_the_model_inputs(example: Path) -> None:
    example.write_text(
        example.read_text().replace(
            'features = ["x0", "x1", "x2", "x3"]\nkeep', 'features = ["x0", "x1", "x2"]\nkeep'
        )
    )
    summary = run(example)
    error = summary["steps"]["validate"]["error"]
    assert "model inputs: model input 'input' takes 4 features, but 3 columns" in error


def test_changed_model_file_reruns_what_reads_it(example: Path, tmp_path: Path) -> None:
    assert run(example)["steps"]["make"]["status"] == "succeeded"
    work = tmp_path / "work"
    shutil.copy(work / "model.onnx", tmp_path / "model.onnx")
    shutil.copy(work / "live.parquet", tmp_path / "live.parquet")
    pipeline = tmp_path / "score.toml"
    pipeline.write_text(
        '[steps.score]\nkind = "score"\nkeep = ["id", "label"]\n'
        'features = ["x0", "x1", "x2", "x3"]\n'
        'inputs = { model = "model.onnx", data = "live.parquet" }\n'
        'outputs = { scored = "out/scored" }\n'
    )
    options = RunOptions()
    assert cache(run_pipeline(pipeline, options)) == {"score": "miss"}
    assert cache(run_pipeline(pipeline, options)) == {"score": "hit"}
    model = tmp_path / "model.onnx"
    model.write_bytes(model.read_bytes().replace(b"example_classifier", b"example_classifieR"))
    assert explain_step(pipeline, "score")["changes"] == ["model file: model.onnx changed content"]
    assert cache(run_pipeline(pipeline, options)) == {"score": "miss"}


def test_metrics_match_scipy_and_numpy() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(500) < 0.4).astype(np.float64)
    p1 = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1).round(2)  # ties on purpose
    probs = np.stack([1 - p1, p1], axis=1)
    u = stats.mannwhitneyu(p1[labels == 1], p1[labels == 0]).statistic
    auc = u / ((labels == 1).sum() * (labels == 0).sum())
    assert METRICS["auc"](labels, probs, 0.5) == pytest.approx(auc, abs=1e-12)
    assert METRICS["auc"](labels, p1, 0.5) == pytest.approx(auc, abs=1e-12)
    accuracy = np.mean((p1 > 0.5) == labels)
    assert METRICS["accuracy"](labels, probs, 0.5) == pytest.approx(accuracy)
    values = rng.normal(size=500)
    guess = values + rng.normal(scale=0.1, size=500)
    assert METRICS["rmse"](values, guess, 0.5) == pytest.approx(
        np.sqrt(np.mean((guess - values) ** 2))
    )
    assert METRICS["mae"](values, guess, 0.5) == pytest.approx(np.mean(np.abs(guess - values)))
    loss = -np.mean(labels * np.log(p1.clip(1e-15)) + (1 - labels) * np.log((1 - p1).clip(1e-15)))
    assert METRICS["log_loss"](labels, probs, 0.5) == pytest.approx(loss, rel=1e-9)


@pytest.mark.slow
def test_register_and_deploy_go_through_the_registry(example: Path) -> None:
    from server.registry import open_registry

    first = run(example)
    assert first["status"] == "succeeded", first
    with open_registry(example.parent / "work/models") as registry:
        (info,) = registry.search()
        assert (info.name, info.version, info.deployed) == ("example-classifier", 1, True)
        assert info.tags == {"source": "score-pipeline"}
        reasons = {e.action: e.reason for e in registry.history("example-classifier")}
        assert reasons["register"] == f"sluice pipeline run {first['run_id']}"
        assert reasons["deploy"] == reasons["register"]
    again = run(example)
    assert cache(again)["register"] == "hit" and cache(again)["deploy"] == "hit"
    with open_registry(example.parent / "work/models") as registry:
        assert [i.version for i in registry.search()] == [1]


@pytest.mark.slow
def test_evaluate_against_the_deployed_version(example: Path) -> None:
    text = example.read_text().replace(
        'inputs = { scored = "score.scored" }',
        'inputs = { scored = "score.scored", data = "make.live" }\n'
        'against = "example-classifier"\nrepository = "work/models"\n'
        'features = ["x0", "x1", "x2", "x3"]\nmax_regression = { auc = "${params.slack}" }\n'
        "deterministic = false",
    )
    text = text.replace("[params]", "[params]\nslack = 0.0", 1)
    example.write_text(text)
    first = run(example)
    assert first["status"] == "succeeded", first
    body = json.loads((example.parent / "work/metrics.json").read_text())
    assert body["deployed"] is None  # nothing registered before the first run
    second = run(example)
    assert second["status"] == "succeeded", second
    body = json.loads((example.parent / "work/metrics.json").read_text())
    assert body["deployed"]["version"] == "1"
    assert body["deployed"]["metrics"]["auc"] == pytest.approx(body["metrics"]["auc"])
    assert body["deployed"]["regression"]["auc"] == pytest.approx(0.0, abs=1e-12)
    failed = run(example, slack="-0.5")  # demand a model 0.5 AUC better than the deployed one
    assert failed["status"] == "failed"
    assert "worse than deployed version" in failed["steps"]["evaluate"]["error"], failed["steps"][
        "evaluate"
    ]["error"]
