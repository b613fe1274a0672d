"""A rollout in a real server: the split reaches both edges (sticky by header), the weights
are exported, and the controller started by the server rolls a bad version back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from server.registry import Registry
from server.registry.rollouts import RolloutPolicy, Rollouts
from tests.live import LiveServer
from tests.registry.test_serving import wait_for
from tests.rollout.conftest import X

BODY = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16], "data": X.ravel().tolist()}]
}


@pytest.fixture
def database() -> None:
    return None


@pytest.fixture
def live(two: Registry, repo: Path) -> Iterator[LiveServer]:
    with LiveServer(repo, registry_poll_s=0.05) as server:
        yield server


def http_version(live: LiveServer, user: str = "") -> str:
    headers = {"X-User": user} if user else {}
    response = httpx.post(f"http://{live.url}/v2/models/m/infer", json=BODY, headers=headers)
    response.raise_for_status()
    return str(response.json()["model_version"])


def split_is(live: LiveServer, weight: str) -> bool:
    metrics = httpx.get(f"http://{live.url}/metrics").text
    return f'sluice_rollout_weight{{model="m",version="2"}} {weight}' in metrics


@pytest.mark.slow
def test_sticky_split_over_http_and_grpc(two: Registry, live: LiveServer) -> None:
    Rollouts(two).start("m", 2, RolloutPolicy(canary=50, sticky="X-User", interval_s=3600))
    wait_for(lambda: split_is(live, "50.0"))
    for user in ("ana", "bo", "cy"):
        assert len({http_version(live, user) for _ in range(10)}) == 1
    assert {http_version(live, f"user-{i}") for i in range(40)} == {"1", "2"}
    with grpcclient.InferenceServerClient(live.grpc_url) as client:
        inp = grpcclient.InferInput("input", [1, 16], "FP32")
        inp.set_data_from_numpy(X)
        for user in ("ana", "bo", "cy"):
            seen = {
                client.infer("m", [inp], headers={"x-user": user}).get_response().model_version
                for _ in range(10)
            }
            assert seen == {http_version(live, user)}  # same hash on both edges


def test_the_server_rolls_a_disagreeing_version_back(two: Registry, live: LiveServer) -> None:
    policy = RolloutPolicy(canary=0, mirror=100, interval_s=0.3, min_requests=10)
    Rollouts(two).start("m", 2, policy)
    wait_for(lambda: split_is(live, "0.0"))

    def rolled_back() -> bool:
        for _ in range(10):
            assert http_version(live) == "1"
        return two.history("m")[-1].action == "rollout_rollback"

    wait_for(rolled_back, timeout=30)
    metrics = httpx.get(f"http://{live.url}/metrics").text
    assert 'sluice_mirror_requests_total{model="m",result="compared",version="2"}' in metrics
    assert "sluice_mirror_disagreement_bucket" in metrics
    assert np.isfinite(float(metrics.split("sluice_mirror_disagreement_count")[1].split()[1]))


@pytest.mark.slow
def test_a_restarted_server_resumes_the_split(two: Registry, repo: Path) -> None:
    Rollouts(two).start("m", 2, RolloutPolicy(canary=10, interval_s=3600))
    Rollouts(two).step("m", 40)
    for _ in range(2):
        with LiveServer(repo, registry_poll_s=0.05) as server:
            assert split_is(server, "40.0")
            assert {http_version(server, f"u{i}") for i in range(60)} == {"1", "2"}
