"""The validation gate and the rollout records, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as sk

from benchmarks.models import mlp, save
from server import evaluation as scores
from server.errors import Conflict, InvalidInput, ModelNotFound
from server.registry import Registry
from server.registry.rollouts import RolloutPolicy, Rollouts
from server.rollout.scores import Threshold
from server.rollout.validation import Request, validate


def events(registry: Registry) -> list[str]:
    with registry.db.read() as tx:
        return [r["type"] for r in tx.all("SELECT type FROM outbox ORDER BY seq")]


def test_production_needs_a_passing_validation(registry: Registry, versions: tuple) -> None:
    registry.register("m", versions[0])
    with pytest.raises(Conflict, match="no passing validation"):
        registry.alias("m", "production", 1)
    with pytest.raises(InvalidInput, match="--reason"):
        registry.alias("m", "production", 1, force=True)
    registry.alias("m", "staging", 1)  # other aliases are not gated
    registry.alias("m", "production", 1, force=True, reason="hotfix, validated by hand")
    last = registry.history("m")[-1]
    assert last.action == "alias" and "forced" in last.detail and last.reason.startswith("hotfix")


def test_validation_record_and_event(registry: Registry, versions: tuple) -> None:
    registry.register("m", versions[0])
    record = validate(registry, Request("m", 1))
    assert record["passed"] and record["rows"] == 32 and record["latency_ms"]["p50"] > 0
    assert registry.get("m", 1).validation == record
    assert events(registry)[-1] == "io.sluice.validation.passed"
    registry.alias("m", "production", 1)  # the gate opens


def labelled(tmp_path: Path, rows: int = 400) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((rows, 16)).astype(np.float32)
    y = rng.integers(0, 4, rows)
    table = pa.table({**{f"f{i}": x[:, i] for i in range(16)}, "label": y})
    path = tmp_path / "sample.parquet"
    pq.write_table(table, path)
    return path, x, y


def test_metrics_thresholds_and_comparison(
    registry: Registry, versions: tuple, tmp_path: Path
) -> None:
    data, _, _ = labelled(tmp_path)
    registry.register("m", versions[0])
    registry.register("m", versions[1])
    validate(registry, Request("m", 1))
    registry.alias("m", "production", 1)
    request = Request(
        "m", 2, data, "label", (Threshold.parse("accuracy>=0.99"),), against="production"
    )
    record = validate(registry, request)
    assert not record["passed"]
    assert any("accuracy" in p for p in record["problems"])
    assert record["against"]["version"] == 1
    assert events(registry)[-1] == "io.sluice.validation.failed"
    with pytest.raises(Conflict):
        Rollouts(registry).registry.alias("m", "production", 2)
    loose = Request("m", 2, data, "label", (Threshold.parse("accuracy>=0"),), "", 1.0)
    assert validate(registry, loose)["passed"]


def test_non_finite_outputs_fail(registry: Registry, tmp_path: Path) -> None:
    model = mlp((16, 8, 4), seed=1)
    for init in model.graph.initializer:  # a NaN bias poisons every answer
        if init.name == "b0":
            init.float_data[:] = []
            init.raw_data = np.full(8, np.nan, np.float32).tobytes()
    registry.register("nan", save(model, tmp_path / "nan.onnx"))
    record = validate(registry, Request("nan", 1))
    assert not record["passed"] and "non-finite" in record["problems"][0]


def test_bad_validation_requests(registry: Registry, versions: tuple, tmp_path: Path) -> None:
    registry.register("m", versions[0])
    data, _, _ = labelled(tmp_path)
    with pytest.raises(InvalidInput, match="unknown metric 'f1'"):
        Threshold.parse("f1>=0.5")
    with pytest.raises(InvalidInput, match="needs --label"):
        validate(registry, Request("m", 1, data, "", (Threshold.parse("auc>=0.5"),)))
    with pytest.raises(InvalidInput, match="no alias 'nope'"):
        validate(registry, Request("m", 1, data, "label", (), against="nope"))
    with pytest.raises(ModelNotFound):
        validate(registry, Request("m", 9))
    assert registry.get("m", 1).validation is None  # nothing recorded


def test_scores_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    p = np.clip(rng.random(500) * 0.6 + y * 0.3, 0, 1)
    p[:50] = 0.5  # ties
    two = np.stack([1 - p, p], axis=1)
    assert scores.auc(y, two) == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)
    assert scores.accuracy(y, p) == pytest.approx(sk.accuracy_score(y, p >= 0.5))
    assert scores.log_loss(y, p) == pytest.approx(sk.log_loss(y, p), rel=1e-9)
    assert scores.rmse(y, p) == pytest.approx(np.sqrt(sk.mean_squared_error(y, p)))
    assert scores.mae(y, p) == pytest.approx(sk.mean_absolute_error(y, p))
    probs = rng.dirichlet(np.ones(3), 200)
    labels = rng.integers(0, 3, 200)
    assert scores.log_loss(labels, probs) == pytest.approx(sk.log_loss(labels, probs), rel=1e-9)
    assert scores.accuracy(labels, probs) == sk.accuracy_score(labels, probs.argmax(1))
    values = rng.normal(size=300)
    guess = values + rng.normal(scale=0.3, size=300)
    assert scores.r2(values, guess) == pytest.approx(sk.r2_score(values, guess), rel=1e-12)
    assert scores.METRICS["logloss"] is scores.METRICS["log_loss"]  # the gate's old spelling


@pytest.mark.parametrize(
    ("metric", "labels", "outputs", "message"),
    [
        ("rmse", [1.0, 2.0], np.ones((2, 3)), "one score per row"),
        ("auc", [0, 1], np.ones((2, 3)), "one score per row or two columns"),
        ("auc", [0, 2], np.ones(2), "binary labels"),
        ("auc", [1, 1], np.ones(2), "both classes"),
    ],
)
def test_a_metric_refuses_what_it_cannot_score(
    metric: str, labels: list[float], outputs: np.ndarray, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        scores.METRICS[metric](np.array(labels), outputs)


def test_rollout_bad_input_changes_nothing(two: Registry) -> None:
    rollouts = Rollouts(two)
    before = len(two.history("m"))
    with pytest.raises(InvalidInput, match=r"0\.\.100"):
        RolloutPolicy(canary=101)
    with pytest.raises(InvalidInput, match=r"0\.\.100"):
        RolloutPolicy(mirror=-1)
    two.undeploy("m", 2)
    with pytest.raises(Conflict, match="not deployed"):
        rollouts.start("m", 2, RolloutPolicy())
    with pytest.raises(ModelNotFound):
        rollouts.start("m", 7, RolloutPolicy())
    with pytest.raises(Conflict, match="nothing to roll out"):
        rollouts.start("m", 1, RolloutPolicy())
    assert len(two.history("m")) == before + 1  # only the undeploy
    two.deploy("m", 2)
    rollouts.start("m", 2, RolloutPolicy(canary=20))
    with pytest.raises(Conflict, match="already has a rollout"):
        rollouts.start("m", 2, RolloutPolicy())
    with pytest.raises(InvalidInput, match=r"0\.\.100"):
        rollouts.step("m", 120)
    assert rollouts.get("m").weight == 20
    with pytest.raises(ModelNotFound, match="unknown model 'other'"):
        rollouts.get("other")


def test_rollout_lifecycle_is_audited(two: Registry) -> None:
    rollouts = Rollouts(two)
    rollouts.start("m", 2, RolloutPolicy(canary=10, mirror=20, sticky="x-user"), actor="ana")
    rollouts.step("m", 50, reason="looks fine")
    with pytest.raises(Conflict, match="no passing validation"):
        rollouts.promote("m")
    assert rollouts.get("m").weight == 50  # refused: nothing changed
    validate(two, Request("m", 2))
    rollouts.promote("m", reason="done")
    assert two.get("m", alias="production").version == 2
    assert [v.version for v in two.search("m") if v.deployed] == [2]
    actions = [e.action for e in two.history("m")][-6:]
    assert actions == [
        "rollout_start",
        "rollout_step",
        "validate",
        "alias",
        "undeploy",
        "rollout_promote",
    ]
    kinds = events(two)
    assert "io.sluice.rollout.stepped" in kinds and kinds[-1] == "io.sluice.rollout.promoted"
    assert two.verify().ok
    with pytest.raises(ModelNotFound):
        rollouts.get("m")


def test_abort_rolls_back_and_the_lease_is_exclusive(two: Registry) -> None:
    rollouts = Rollouts(two)
    rollouts.start("m", 2, RolloutPolicy())
    rollouts.rollback("m", reason="changed my mind")
    assert events(two)[-1] == "io.sluice.rollout.rolled_back"
    assert rollouts.active() == []
    assert rollouts.lease("ctl", "a", 60)
    assert not rollouts.lease("ctl", "b", 60)
    assert rollouts.lease("ctl", "a", 60)  # renewal
    assert rollouts.lease("other", "b", 60)
    assert rollouts.lease("short", "a", -1)
    assert rollouts.lease("short", "b", 60)  # a's lease expired


def test_each_process_reports_its_figures_and_silent_ones_age_out(two: Registry) -> None:
    import time

    rollouts = Rollouts(two)
    first = {"versions": {"1": {"success": 3.0}}, "mirrored_rows": 2, "disagreeing": 0}
    rollouts.report("a", "m", first)
    rollouts.report("b", "m", {"versions": {}, "mirrored_rows": 0, "disagreeing": 0})
    rollouts.report("a", "m", {**first, "mirrored_rows": 5})  # replaces a's earlier report
    found = rollouts.reported("m", 60)
    assert found.keys() == {"a", "b"} and found["a"]["mirrored_rows"] == 5
    assert found["a"]["versions"] == {"1": {"success": 3.0}}
    assert rollouts.reported("other", 60) == {}
    with two.db.write() as tx:  # b last spoke a minute ago
        tx.execute(
            "UPDATE rollout_figures SET reported_at = ? WHERE holder = 'b'", (time.time() - 60,)
        )
    assert rollouts.reported("m", 30).keys() == {"a"}
