"""Online drift in a real server: gauges, GET .../drift, and the same figures as
``sluice drift BASELINE CAPTURE_DIR`` over the captured window."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import tritonclient.http as httpclient

from server.cli import main
from server.monitoring.baseline import BaselineOptions, build_baseline, save_baseline
from tests import models
from tests.live import LiveServer


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_online_drift_matches_sluice_drift_on_the_captured_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    baseline = tmp_path / "baseline.npz"
    reference = pa.table({n: rng.standard_normal(5000) for n in ("a", "b", "c")})
    save_baseline(build_baseline(reference, BaselineOptions()), baseline)
    cap = tmp_path / "cap"
    config = (
        f'[capture]\nenabled = true\npath = "{cap}"\n'
        f'[drift]\nenabled = true\nbaseline = "{baseline}"\nmin_rows = 50\n'
        "window_seconds = 3600\nevaluate_every_s = 3600\n"
    )
    repo = models.write_repository(tmp_path / "repo", {"m": models.identity("FP32")}, {"m": config})
    with LiveServer(repo) as live:
        status, _ = _get(f"http://{live.url}/v2/models/m/drift")
        assert status == 404  # nothing evaluated yet
        client = httpclient.InferenceServerClient(live.url)
        for i in range(10):
            data = rng.standard_normal((60, 3)).astype(np.float32)
            data[:, 1] += 1.0
            tensor = httpclient.InferInput("INPUT0", [60, 3], "FP32")
            tensor.set_data_from_numpy(data, binary_data=True)
            client.infer("m", [tensor], request_id=f"r{i}")
        monitor = live.service.monitor.get("m")
        monitor.wait_idle()
        monitor.evaluate_now()
        status, body = _get(f"http://{live.url}/v2/models/m/drift")
        _, metrics = _get(f"http://{live.url}/metrics")
    online = json.loads(body)
    assert status == 200 and online["window_rows"] == 600
    assert [n for n, f in online["features"].items() if f["drifted"]] == ["b"]
    assert online["states"] == {"a": "ok", "b": "pending", "c": "ok"}
    assert online["psi_warnings"] == ["b"]
    assert b'sluice_drift_state{feature="b",model="m",version="1"} 2.0' in metrics
    assert b'sluice_drift{feature="b",model="m",statistic="psi",version="1"}' in metrics

    out = tmp_path / "offline.json"
    code = main(["drift", str(baseline), str(cap / "model=m" / "version=1"), "--json", str(out)])
    assert code == 0 and "b" in capsys.readouterr().out
    offline = json.loads(out.read_text())
    for name, feature in offline["features"].items():
        for key, value in feature.items():
            if isinstance(value, float):
                assert online["features"][name][key] == pytest.approx(value, rel=1e-9), key
        assert feature["current_rows"] == 600

    served = tmp_path / "served.json"
    served.write_text(body.decode())
    html = tmp_path / "served.html"
    assert main(["drift", "report", str(served), "--html", str(html)]) == 0
    assert "<svg" in html.read_text() and "drifted" in capsys.readouterr().out


def test_drift_cli_time_range_filters_captured_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    baseline = tmp_path / "baseline.npz"
    save_baseline(
        build_baseline(pa.table({"a": rng.standard_normal(500)}), BaselineOptions()), baseline
    )
    cap = tmp_path / "cap"
    config = f'[capture]\nenabled = true\npath = "{cap}"\n'
    repo = models.write_repository(
        tmp_path / "repo", {"m": models.identity("FP32", 1)}, {"m": config}
    )
    with LiveServer(repo) as live:
        client = httpclient.InferenceServerClient(live.url)
        tensor = httpclient.InferInput("INPUT0", [5, 1], "FP32")
        tensor.set_data_from_numpy(np.ones((5, 1), np.float32))
        client.infer("m", [tensor])
    path = str(cap / "model=m")
    out = tmp_path / "r.json"
    assert main(["drift", str(baseline), path, "--since", "2000-01-01", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["features"]["a"]["current_rows"] == 5
    assert main(["drift", str(baseline), path, "--since", "2999-01-01", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["features"]["a"]["error"] == "current is empty"
    assert main(["drift", str(baseline), path, "--until", "yesterday"]) == 2
    assert "--until: 'yesterday' is not an ISO 8601 time" in capsys.readouterr().err
