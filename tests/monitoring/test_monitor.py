"""The monitor without a server: bounded queue, file rotation, config errors, alert events."""

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from prometheus_client import CollectorRegistry

from server.engine.observer import Observation, ObservedModel
from server.engine.requests import InferRequest
from server.errors import ConfigError
from server.metrics import Metrics
from server.monitoring.alerts import DETECTED, RESOLVED
from server.monitoring.baseline import BaselineOptions, build_baseline, save_baseline
from server.monitoring.capture import ROW_GROUP_ROWS, CaptureWriter
from server.monitoring.gathered import Gathered
from server.monitoring.monitor import Monitor
from server.monitoring.worker import ModelMonitor
from server.settings import CaptureConfig, DriftConfig, ModelConfig
from server.tensors import Tensor, TensorSpec

SPEC = TensorSpec("x", "FP32", (-1, 3))


def _model(config: ModelConfig) -> ObservedModel:
    return ObservedModel(
        "m", "1", config, {"x": SPEC}, {"y": TensorSpec("y", "FP32", (-1, 3))}, True
    )


def _observation(rid: str, data: np.ndarray, time_ns: int | None = None) -> Observation:
    request = InferRequest("m", [Tensor("x", "FP32", data)], id=rid)
    outputs = [Tensor("y", "FP32", data)]
    return Observation("m", "1", request, outputs, None, 1000, time_ns or time.time_ns())


def _gathered(writer: CaptureWriter, observations: list[Observation]) -> Gathered:
    gathered = Gathered({(t.role, t.name): t.spec for t in writer.tensors})
    for observation in observations:
        gathered.append(observation, observation.request.id, 0.0)
    return gathered


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, {"model": "m", "version": "1", **labels})
    return 0.0 if found is None else found


def test_a_full_queue_drops_rows_and_counts_them(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry).monitoring
    config = ModelConfig(capture=CaptureConfig(enabled=True, path=str(tmp_path), queue_rows=3))
    model = _model(config)
    writer = CaptureWriter(model, config.capture, metrics.capture("m", "1"))
    monitor = ModelMonitor(model, writer, None, "", metrics, _Recorder())  # worker not started
    for i in range(10):
        monitor.offer(_observation(f"r{i}", np.ones((1, 3), np.float32)))
    assert _value(registry, "sluice_capture_queue_rows") == 3
    assert _value(registry, "sluice_capture_dropped_total", reason="queue_full") == 7
    monitor.start()
    monitor.close()
    assert _value(registry, "sluice_capture_rows_total") == 3
    assert _value(registry, "sluice_capture_bytes_total") > 0


def test_rows_lost_to_a_failed_write_are_counted(tmp_path: Path) -> None:
    import shutil

    registry = CollectorRegistry()
    config = CaptureConfig(enabled=True, path=str(tmp_path / "cap"))
    metrics = Metrics(registry).monitoring.capture("m", "1")
    writer = CaptureWriter(_model(ModelConfig(capture=config)), config, metrics)
    data = np.ones((1, 3), np.float32)
    rows = _gathered(writer, [_observation(f"r{i}", data) for i in range(ROW_GROUP_ROWS)])
    writer.add(rows)  # a full row group: written to the open (temporary) file
    shutil.rmtree(tmp_path / "cap")  # the file's directory is gone: the commit cannot rename
    writer.close()
    assert _value(registry, "sluice_capture_dropped_total", reason="write_error") == len(rows)
    assert _value(registry, "sluice_capture_rows_total") == 0
    writer.add(rows.select([0, 1]))  # the writer goes on with a new file
    writer.close()
    assert _value(registry, "sluice_capture_rows_total") == 2


def test_files_commit_by_age_and_by_hour(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    config = CaptureConfig(enabled=True, path=str(tmp_path), max_file_seconds=1e-6)
    writer = CaptureWriter(
        _model(ModelConfig(capture=config)), config, Metrics(registry).monitoring.capture("m", "1")
    )
    hour = 3600 * 10**9
    base = 1_800_000_000 * 10**9 // hour * hour
    rows = _gathered(
        writer,
        [
            _observation(f"r{i}", np.ones((2, 3), np.float32), base + i * hour // 2)
            for i in range(3)
        ],
    )
    writer.add(rows.select([0, 1]))  # both in the first hour
    writer.tick()
    writer.add(rows.select([2]))  # the next hour
    writer.close()
    assert len(writer.committed) == 2
    hours = sorted(p.parent.name for p in tmp_path.rglob("*.parquet"))
    assert len(set(hours)) == 2
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("request_id").to_pylist()) == ["r0", "r1", "r2"]


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("capture", {"sample_rate": 1.5}, "capture.sample_rate"),
        ("capture", {"enabled": True}, "capture.path"),
        ("drift", {"statistics": ["psi", "mean"]}, "[drift] statistics: must be one of"),
        ("drift", {"psi": -1.0}, "drift.psi must be > 0"),
        ("drift", {"alert_after": 4, "alert_window": 3}, "drift.alert_after"),
        ("capture", {"sampel_rate": 0.5}, "unknown key(s) ['sampel_rate']"),
    ],
)
def test_bad_monitoring_config_is_a_clear_error(
    section: str, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ModelConfig.from_mapping({section: values})


def test_hash_columns_without_a_key_fail_the_load(tmp_path: Path) -> None:
    config = ModelConfig(
        capture=CaptureConfig(enabled=True, path=str(tmp_path), hash_columns=("x",))
    )
    monitor = Monitor(Metrics(CollectorRegistry()).monitoring, _Recorder())
    with pytest.raises(ConfigError, match="model 'm' \\[capture\\] hash_columns needs a key"):
        monitor.attach(_model(config))


def test_drift_without_a_baseline_fails_the_load() -> None:
    config = ModelConfig(drift=DriftConfig(enabled=True))
    monitor = Monitor(Metrics(CollectorRegistry()).monitoring, _Recorder())
    with pytest.raises(ConfigError, match="model 'm' \\[drift\\] needs a baseline"):
        monitor.attach(_model(config))


def _baseline_file(tmp_path: Path, names: tuple[str, ...] = ("a", "b", "c")) -> Path:
    rng = np.random.default_rng(0)
    table = pa.table({n: rng.standard_normal(5000) for n in names})
    path = tmp_path / "baseline.npz"
    save_baseline(build_baseline(table, BaselineOptions()), path)
    return path


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ("missing.npz", "baseline 'missing.npz': No such file"),
        ("mismatch", "baseline feature\\(s\\) p, q match no model input"),
    ],
)
def test_bad_baselines_name_the_model(tmp_path: Path, baseline: str, message: str) -> None:
    path = str(_baseline_file(tmp_path, ("p", "q"))) if baseline == "mismatch" else baseline
    config = ModelConfig(drift=DriftConfig(enabled=True, baseline=path))
    monitor = Monitor(Metrics(CollectorRegistry()).monitoring, _Recorder())
    with pytest.raises(ConfigError, match=f"model 'm' \\[drift\\]:? {message}"):
        monitor.attach(_model(config))
    lenient = ModelConfig(drift=DriftConfig(enabled=True, baseline=path, required=False))
    monitor.attach(_model(lenient))  # serves without drift
    assert monitor.get("m") is None


class _Recorder:
    """An ``AlertSink`` that keeps what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def emit(self, type: str, subject: str, data: dict[str, Any]) -> None:
        self.events.append((type, subject, data))


def test_state_changes_become_events_with_the_feature_named(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    sink = _Recorder()
    drift = DriftConfig(
        enabled=True,
        baseline=str(_baseline_file(tmp_path)),
        window_seconds=10,
        evaluate_every_s=10,
        min_rows=50,
        alert_after=2,
        alert_window=2,
        resolve_after=1,
    )
    monitor = Monitor(Metrics(registry).monitoring, sink)
    monitor.attach(_model(ModelConfig(drift=drift)))
    rng = np.random.default_rng(1)
    model = monitor.get("m")
    assert model is not None
    for window in range(3):
        data = rng.standard_normal((400, 3))
        if window < 2:
            data[:, 1] += 1.0
        now = 1_000_000.0 + 10 * window
        monitor.observe(_observation(f"w{window}", data.astype(np.float32), int(now * 1e9)))
        model.wait_idle()
        model.evaluate_now(now + 5)
    monitor.close()
    assert [(t, d["feature"]) for t, _, d in sink.events] == [(DETECTED, "b"), (RESOLVED, "b")]
    _, subject, data = sink.events[0]
    assert subject == "models/m:1"
    assert data["statistic"] == "ks_p_value_bh" and data["value"] < data["threshold"] == 0.05
    assert data["state"] == "firing" and data["n_cur"] == 400 and data["n_ref"] == 5000
    assert len(data["baseline_sha256"]) == 64
    assert _value(registry, "sluice_drift_state", feature="b") == 4  # resolved
    assert _value(registry, "sluice_drift_window_rows") == 400
    assert _value(registry, "sluice_drift", feature="b", statistic="psi") > 0


def test_the_hash_key_comes_from_the_environment_and_stays_out_of_repr() -> None:
    from server.settings import ServerSettings

    settings = ServerSettings.from_env({}, {"SLUICE_CAPTURE_HASH_KEY": "sekrit"})
    assert settings.capture_hash_key == "sekrit"
    assert "sekrit" not in repr(settings)


def _colour_drift(tmp_path: Path, rng: np.random.Generator, **extra: Any) -> DriftConfig:
    """Drift against a baseline of three standard normal features and ``colour`` (80 % red,
    20 % blue), in one 10-second window of at least 50 rows."""
    table = pa.table(
        {
            "a": rng.standard_normal(5000),
            "b": rng.standard_normal(5000),
            "c": rng.standard_normal(5000),
            "colour": rng.choice(["red", "blue"], size=5000, p=[0.8, 0.2]),
        }
    )
    baseline = tmp_path / "baseline.npz"
    save_baseline(build_baseline(table, BaselineOptions()), baseline)
    return DriftConfig(
        enabled=True,
        baseline=str(baseline),
        window_seconds=10,
        evaluate_every_s=10,
        min_rows=50,
        **extra,
    )


def test_a_categorical_input_fires_its_own_alert(tmp_path: Path) -> None:
    """A BYTES input named like a categorical baseline feature is watched beside the numeric
    ones: a shifted colour mix fires for ``colour`` only."""
    rng = np.random.default_rng(0)
    drift = _colour_drift(tmp_path, rng, alert_after=1, alert_window=1)
    inputs = {"x": SPEC, "colour": TensorSpec("colour", "BYTES", (-1, 1))}
    model = ObservedModel("m", "1", ModelConfig(drift=drift), inputs, {}, True)
    sink = _Recorder()
    monitor = Monitor(Metrics(CollectorRegistry()).monitoring, sink)
    monitor.attach(model)
    watched = monitor.get("m")
    assert watched is not None and watched.online is not None
    assert "colour" not in watched.online.skipped
    now = 1_000_000.0
    for i in range(20):
        x = rng.standard_normal((100, 3)).astype(np.float32)
        colour = np.array([[b"blue"]] * 100, dtype=np.object_)  # was 20 % blue
        request = InferRequest(
            "m", [Tensor("x", "FP32", x), Tensor("colour", "BYTES", colour)], id=f"r{i}"
        )
        monitor.observe(Observation("m", "1", request, [], None, 1000, int(now * 1e9)))
    watched.wait_idle()
    watched.evaluate_now(now + 1)
    monitor.close()
    assert [(t, d["feature"]) for t, _, d in sink.events] == [(DETECTED, "colour")]
    assert sink.events[0][2]["statistic"] == "js"


def test_sluice_drift_reads_captured_categories_as_the_monitor_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sluice drift BASELINE CAPTURE_DIR`` takes a categorical feature from the captured
    BYTES input named like it (invalid UTF-8 decoded as the window decodes it) and finds the
    figures the online window found on the same requests."""
    import json

    from server.cli import main

    rng = np.random.default_rng(1)
    drift = _colour_drift(tmp_path, rng, small_sample_rows=10)
    cap = tmp_path / "cap"
    config = ModelConfig(capture=CaptureConfig(enabled=True, path=str(cap)), drift=drift)
    inputs = {"x": SPEC, "colour": TensorSpec("colour", "BYTES", (-1, 1))}
    monitor = Monitor(Metrics(CollectorRegistry()).monitoring, _Recorder())
    monitor.attach(ObservedModel("m", "1", config, inputs, {}, True))
    watched = monitor.get("m")
    assert watched is not None
    now = 1_000_000.0
    for i in range(20):
        x = rng.standard_normal((50, 3)).astype(np.float32)
        colour = rng.choice([b"red", b"blue", b"green", b"\xff"], size=(50, 1)).astype(np.object_)
        request = InferRequest(
            "m", [Tensor("x", "FP32", x), Tensor("colour", "BYTES", colour)], id=f"r{i}"
        )
        monitor.observe(Observation("m", "1", request, [], None, 1000, int(now * 1e9)))
    watched.wait_idle()
    online = watched.evaluate_now(now + 1)
    monitor.close()
    assert online is not None
    out = tmp_path / "offline.json"
    captured = str(cap / "model=m" / "version=1")
    code = main(["drift", drift.baseline, captured, "--json", str(out)])
    assert code == 0 and "colour" in capsys.readouterr().out
    offline = json.loads(out.read_text())["features"]
    assert offline.keys() == {"a", "b", "c", "colour"}
    assert offline["colour"]["kind"] == "categorical" and offline["colour"]["current_rows"] == 1000
    for name, feature in online.report.features.items():
        for statistic, value in feature.statistics.items():
            assert offline[name][statistic] == pytest.approx(value, rel=1e-9), (name, statistic)
    assert online.report.features["colour"].drifted and offline["colour"]["drifted"]
