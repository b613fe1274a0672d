"""``sluice serve`` runs gRPC beside HTTP on one loop, and stopping drains both."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from tests import models
from tests.live import LiveServer


def test_grpc_serves_beside_http_and_drains_on_stop(tmp_path: Path) -> None:
    slow = "[batching]\nmax_queue_delay_us = 300000\n"
    built = {"identity_fp32": models.identity("FP32"), "slow": models.identity("FP32")}
    repo = models.write_repository(tmp_path, built, {"slow": slow})
    data = np.ones((1, 3), dtype=np.float32)
    inputs = [triton.InferInput("INPUT0", [1, 3], "FP32").set_data_from_numpy(data)]
    answers: list[object] = []
    done = threading.Event()

    def keep(result: object, error: object) -> None:
        answers.append(result if error is None else error)
        done.set()

    with LiveServer(repo) as live, triton.InferenceServerClient(live.grpc_url) as client:
        with urllib.request.urlopen(f"http://{live.url}/v2/health/ready") as resp:
            assert resp.status == 200
        result = client.infer("identity_fp32", inputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
        client.async_infer("slow", inputs, callback=keep)
        time.sleep(0.1)  # queued behind the slow model's 300 ms delay
        live.stop()
        assert done.wait(10)
    assert live.exit_code == 0
    assert isinstance(answers[0], triton.InferResult)
