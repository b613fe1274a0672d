"""``sluice serve REPO`` with a registry: deployed versions, aliases, swaps, audited control."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.models import mlp, save
from server.registry import Registry, open_registry
from server.registry.outbox import Outbox
from tests.live import LiveServer

X = np.ones((1, 16), np.float32)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Same interface, different weights: the answer tells which version served."""
    root = tmp_path_factory.mktemp("versions")
    return save(mlp((16, 32, 4), seed=1), root / "v1.onnx"), save(
        mlp((16, 32, 4), seed=2), root / "v2.onnx"
    )


def infer(url: str, version: str = "") -> tuple[str, list[float]]:
    path = f"/v2/models/m/versions/{version}/infer" if version else "/v2/models/m/infer"
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 16], "data": X.ravel().tolist()}
        ]
    }
    response = httpx.post(f"http://{url}{path}", json=body, timeout=10)
    response.raise_for_status()
    answer = response.json()
    return answer["model_version"], answer["outputs"][0]["data"]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def served(
    repo: Path, database: str | None, two_models: tuple[Path, Path]
) -> Iterator[tuple[LiveServer, Registry]]:
    with open_registry(repo, database) as reg:
        reg.register("m", two_models[0])
        reg.register("m", two_models[1])
        reg.deploy("m", 1, reason="launch")
        with LiveServer(
            repo, registry=database or "", registry_poll_s=0.1, model_control=True
        ) as live:
            yield live, reg


def test_serves_deployed_versions_and_notices_changes(
    served: tuple[LiveServer, Registry],
) -> None:
    live, reg = served
    meta = httpx.get(f"http://{live.url}/v2/models/m").json()
    assert meta["versions"] == ["1"]
    assert infer(live.url)[0] == "1"
    status = httpx.get(f"http://{live.url}/v2/models/m/versions/2/ready")
    assert status.status_code != 200
    reg.deploy("m", 2)
    took = wait_for(
        lambda: httpx.get(f"http://{live.url}/v2/models/m").json()["versions"] == ["1", "2"]
    )
    assert took < 2.0
    assert infer(live.url)[0] == "2"  # no alias: the highest deployed
    assert infer(live.url, "1")[0] == "1"
    reg.alias("m", "production", 1, force=True, reason="test")
    wait_for(lambda: infer(live.url)[0] == "1", 2.0)
    reg.undeploy("m", 1)
    wait_for(lambda: infer(live.url)[0] == "2", 2.0)
    with pytest.raises(httpx.HTTPStatusError) as failed:
        infer(live.url, "1")
    assert failed.value.response.status_code == 404
    assert "no loaded version '1'" in failed.value.response.json()["error"]


def test_repository_control_is_audited(served: tuple[LiveServer, Registry]) -> None:
    live, reg = served
    assert httpx.post(f"http://{live.url}/v2/repository/models/m/unload").status_code == 200
    assert httpx.get(f"http://{live.url}/v2/models/m/ready").status_code != 200
    reg.deploy("m", 2)  # a held (unloaded) model is not brought back by a deploy
    time.sleep(0.5)
    assert httpx.get(f"http://{live.url}/v2/models/m/ready").status_code != 200
    assert httpx.post(f"http://{live.url}/v2/repository/models/m/load").status_code == 200
    assert infer(live.url)[0] == "2"
    actions = [e.action for e in reg.history("m")]
    assert actions[-3:] == ["unload", "deploy", "load"]
    assert reg.verify().ok


def test_tampered_artifact_is_refused_and_reported(
    repo: Path, database: str | None, two_models: tuple[Path, Path]
) -> None:
    with open_registry(repo, database) as reg:
        reg.register("m", two_models[0])
        reg.deploy("m", 1)
        (repo / "m" / "1" / "model.onnx").write_bytes(two_models[1].read_bytes())
        with LiveServer(repo, registry=database or "") as live:
            response = httpx.get(f"http://{live.url}/v2/models/m/ready")
            assert response.status_code == 503
            ready = httpx.get(f"http://{live.url}/v2/health/ready")
            assert ready.status_code == 503
        (failed,) = [e for e in reg.history("m") if e.action == "load_failed"]
        assert "sha256" in failed.reason
        types = [e.type for e in Outbox(reg.db).events()]
        assert types[-1] == "io.sluice.model.load_failed"


def test_a_repository_without_registry_serves_the_latest(
    tmp_path: Path, two_models: tuple[Path, Path]
) -> None:
    for version, model in (("1", two_models[0]), ("3", two_models[1])):
        (tmp_path / "m" / version).mkdir(parents=True)
        (tmp_path / "m" / version / "model.onnx").write_bytes(model.read_bytes())
    with LiveServer(tmp_path) as live:
        assert infer(live.url)[0] == "3"
    assert not (tmp_path / "registry.db").exists()


def test_grpc_model_version_reaches_a_deployed_version(
    served: tuple[LiveServer, Registry],
) -> None:
    import tritonclient.grpc as grpcclient

    live, reg = served
    reg.deploy("m", 2)
    wait_for(lambda: httpx.get(f"http://{live.url}/v2/models/m").json()["versions"] == ["1", "2"])
    with grpcclient.InferenceServerClient(live.grpc_url) as client:
        inp = grpcclient.InferInput("input", [1, 16], "FP32")
        inp.set_data_from_numpy(X)
        for version in ("1", "2"):
            answer = client.infer("m", [inp], model_version=version).get_response()
            assert answer.model_version == version
            _, expected = infer(live.url, version)
            got = client.infer("m", [inp], model_version=version).as_numpy("output")
            np.testing.assert_allclose(got.ravel(), expected, rtol=1e-6)
        assert client.get_model_metadata("m").versions == ["1", "2"]


def test_model_control_records_the_token_as_actor(
    repo: Path, database: str | None, two_models: tuple[Path, Path], tmp_path: Path
) -> None:
    import tritonclient.grpc as grpcclient

    from server.security.tokens import add_token

    tokens = tmp_path / "tokens.toml"
    secret = add_token(tokens, "release-bot", ["inference", "admin"])
    with open_registry(repo, database) as reg:
        reg.register("m", two_models[0])
        reg.deploy("m", 1)
        with LiveServer(repo, registry=database or "", tokens_file=str(tokens)) as live:
            auth = {"authorization": f"Bearer {secret}"}
            refused = httpx.post(f"http://{live.url}/v2/repository/models/m/unload")
            assert refused.status_code == 401
            done = httpx.post(f"http://{live.url}/v2/repository/models/m/unload", headers=auth)
            assert done.status_code == 200
            with grpcclient.InferenceServerClient(live.grpc_url) as client:
                client.load_model("m", headers=auth)
        entries = [(e.action, e.actor) for e in reg.history("m")][-2:]
        assert entries == [("unload", "release-bot"), ("load", "release-bot")]
