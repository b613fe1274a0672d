"""Short real trials on a tiny model: a fresh ``sluice serve`` per trial, loaded by the bench
engine. Windows are a fraction of a second; nothing here depends on how fast the machine is."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.models import save
from server.cli import main
from server.profiler import Knobs, Load, ProfileConfig, Space, run_profile, run_trial
from server.profiler.process import ServerProcess
from server.registry import open_registry
from server.settings import ModelConfig
from tests import models

FAST = ["--window", "0.3", "--concurrency", "2"]
LOAD = Load(window_s=0.3, concurrency=2, max_windows=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(models.small_mlp(), tmp_path_factory.mktemp("profile") / "tiny.onnx")


def profile(*args: str) -> int:
    return main(["profile", *args])


def test_trial_measures_a_fresh_server(tiny: Path) -> None:
    t = run_trial(tiny, Knobs(instances=2, max_batch_size=8), LOAD, index=5)
    assert t.index == 5 and t.errors == 0 and t.throughput > 0
    assert t.p50_ms <= t.p95_ms <= t.p99_ms
    assert 20 < t.peak_rss_mb < 4000 and t.busy_cores > 0
    assert 2 <= t.windows <= 3 and len(t.windows_rows_per_s) == t.windows


def test_server_is_pinned_to_the_cores_asked_for(tiny: Path) -> None:
    first = min(os.sched_getaffinity(0))
    with ServerProcess(tiny, None, "tiny", frozenset({first})) as server:
        assert server._proc is not None
        status = Path(f"/proc/{server._proc.pid}/status").read_text()
        assert f"Cpus_allowed_list:\t{first}\n" in status


@pytest.mark.slow
def test_profile_respects_the_constraint_and_max_trials(tiny: Path) -> None:
    space = Space(
        cores=2,
        instances=(1, 2),
        intra_op_threads=(1, 2),
        workers=(1,),
        allow_spinning=(False,),
        max_batch_size=(8,),
        max_queue_delay_us=(0, 500),
    )
    config = ProfileConfig(tiny, LOAD, slo_p99_ms=1000, max_trials=3, space=space)
    result = run_profile(config)
    assert len(result.trials) == 3
    assert all(t.knobs is not None and t.knobs.threads <= 2 for t in result.trials)
    # The recommendation is the fastest trial within the SLO, with that trial's figures.
    best = max(result.trials, key=lambda t: t.rows_per_s)
    rec = result.recommendation
    assert rec.met and rec.trial == best.index and rec.knobs == best.knobs
    assert (rec.rows_per_s, rec.p99_ms) == (best.rows_per_s, best.p99_ms)
    assert rec.memory_mb >= best.peak_rss_mb


@pytest.mark.slow
def test_written_file_serves_and_report(tiny: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "tuned.toml", tmp_path / "report"
    code = profile(str(tiny), "--max-trials", "2", "--slo-p99-ms", "1000", "--output", str(out),
                   "--report", str(report), *FAST)  # fmt: skip
    assert code == 0
    doc = tomllib.loads(out.read_text())
    assert set(doc) == {"server", "batching", "runtime"}
    ModelConfig.from_mapping(doc)  # works as REPO/<name>/config.toml too
    with ServerProcess(tiny, out, "tiny") as server:
        body = {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32",
                            "data": [0.5] * 16}]}  # fmt: skip
        answer = httpx.post(f"http://{server.url}/v2/models/tiny/infer", json=body)
        assert answer.status_code == 200 and len(answer.json()["outputs"][0]["data"]) == 4
    summary = json.loads((report / "profile.json").read_text())
    assert len(summary["trials"]) == 2 and summary["recommendation"]["objective_met"]
    assert len((report / "trials.csv").read_text().splitlines()) == 3
    assert (report / "throughput_p99.png").stat().st_size > 1000
    assert (report / "memory_batch.png").stat().st_size > 1000


@pytest.mark.slow
def test_unmeetable_slo_answers_with_the_closest_trial(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "closest.toml"
    code = profile(str(tiny), "--max-trials", "1", "--slo-p99-ms", "0.0001", "--output", str(out),
                   *FAST)  # fmt: skip
    captured = capsys.readouterr()
    assert code == 3
    assert "no configuration met p99 <= 0.0001 ms; the closest trial" in captured.err
    assert "OBJECTIVE NOT MET" in captured.out and out.exists()


@pytest.mark.slow
def test_register_stores_the_config_and_recommendation(tiny: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    with open_registry(repo) as reg:
        reg.register("tiny", tiny)
    code = profile(str(tiny), "--max-trials", "1", "--register", "tiny", "--version", "1",
                   "--repository", str(repo), *FAST)  # fmt: skip
    assert code == 0
    with open_registry(repo) as reg:
        tags = reg.get("tiny", 1).tags
        assert tomllib.loads(tags["profile.config"])["runtime"]["instances"] >= 1
        assert json.loads(tags["profile.recommendation"])["memory_mb"] > 0
        assert reg.history("tiny")[-1].action == "profile"
        assert reg.verify().ok


def test_model_that_fails_to_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    assert profile(str(broken), "--max-trials", "1", *FAST) == 1
    err = capsys.readouterr().err
    assert "trial 1" in err and "the model failed to load" in err and "INVALID_PROTOBUF" in err


def test_sample_that_does_not_fit(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "d.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3.0, 4.0]}), sample)
    assert profile(str(tiny), "--sample", str(sample), "--max-trials", "1", *FAST) == 1
    assert "takes 16 features, but the file has 2 numeric columns" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cores", "4096"], "--cores 4096: this process may use"),
        (["--slo-p99-ms", "0"], "--slo-p99-ms must be above 0"),
        (["--max-trials", "0"], "--max-trials must be at least 1"),
        (["--register", "m"], "--register NAME and --version V go together"),
        (["--sample", "/nonexistent.parquet"], "--sample: no such file"),
    ],
)
def test_bad_arguments(
    tiny: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert profile(str(tiny), *args) == 2
    assert message in capsys.readouterr().err


def test_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert profile(str(tmp_path / "none.onnx")) == 2
    assert "no such model file" in capsys.readouterr().err
