"""Served from a registry, online drift uses the baseline registered with the version, and an
alert is an event in the registry's outbox (so webhooks receive it), with the feature named."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tritonclient.http as httpclient

from server.registry import open_registry
from server.registry.outbox import Outbox
from tests import models
from tests.live import LiveServer


def test_drift_alert_goes_through_the_registry_outbox(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    training = tmp_path / "train.parquet"
    pq.write_table(pa.table({n: rng.standard_normal(5000) for n in ("a", "b", "c")}), training)
    config = tmp_path / "config.toml"
    config.write_text(
        "[drift]\nenabled = true\nmin_rows = 50\n"
        "window_seconds = 3600\nevaluate_every_s = 3600\nalert_after = 1\nalert_window = 1\n"
    )
    model = models.save(models.identity("FP32"), tmp_path / "id.onnx")
    repo = tmp_path / "repo"
    with open_registry(repo) as reg:
        reg.register("m", model, config=config, baseline=training)
        reg.deploy("m", 1)
    with LiveServer(repo) as live:
        client = httpclient.InferenceServerClient(live.url)
        for _ in range(5):
            data = rng.standard_normal((60, 3)).astype(np.float32)
            data[:, 2] += 2.0
            tensor = httpclient.InferInput("INPUT0", [60, 3], "FP32")
            tensor.set_data_from_numpy(data, binary_data=True)
            client.infer("m", [tensor])
        monitor = live.service.monitor.get("m")
        monitor.wait_idle()
        monitor.evaluate_now()
    with open_registry(repo) as reg:
        events = [e for e in Outbox(reg.db).events() if e.type.startswith("io.sluice.drift")]
    assert [e.type for e in events] == ["io.sluice.drift.detected"]
    assert events[0].subject == "models/m:1" and b'"feature":"c"' in events[0].body
