"""Endpoint classes and the guard's decisions, on both edges' names."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import ConfigError, Forbidden, Unauthorized
from server.security.access import Guard, check_exposure, grpc_endpoint, http_endpoint
from server.security.tokens import TokenFile, add_token
from server.settings import ServerSettings


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("GET", "/v2/health/live", "health"),
        ("GET", "/v2/health/ready", "health"),
        ("GET", "/v2", "metadata"),
        ("GET", "/v2/models/m", "metadata"),
        ("GET", "/v2/models/m/versions/2", "metadata"),
        ("GET", "/v2/models/m/ready", "health"),
        ("POST", "/v2/models/m/infer", "inference"),
        ("POST", "/v2/models/m/versions/1/infer", "inference"),
        ("GET", "/v2/models/m/config", "admin"),
        ("GET", "/v2/models/m/stats", "admin"),
        ("GET", "/v2/models/stats", "admin"),
        ("POST", "/v2/repository/index", "admin"),
        ("POST", "/v2/repository/models/m/load", "model_control"),
        ("POST", "/v2/repository/models/m/unload", "model_control"),
        ("GET", "/metrics", "metrics"),
        ("GET", "/anything/else", "inference"),
    ],
)
def test_http_endpoint_classes(method: str, path: str, endpoint: str) -> None:
    assert http_endpoint(method, path) == endpoint


def test_grpc_endpoint_classes() -> None:
    prefix = "/inference.GRPCInferenceService/"
    assert grpc_endpoint(prefix + "ModelInfer") == "inference"
    assert grpc_endpoint(prefix + "RepositoryModelLoad") == "model_control"
    assert grpc_endpoint(prefix + "ServerLive") == "health"
    assert grpc_endpoint("/other.Service/Unknown") == "inference"


def test_without_tokens_all_is_open_but_model_control() -> None:
    guard = Guard()
    assert guard.check("inference", None) == ""
    with pytest.raises(Forbidden, match="model control is off"):
        guard.check("model_control", None)
    assert Guard(model_control=True).check("model_control", None) == ""


def test_with_tokens(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    scorer = add_token(path, "scorer", ["inference"])
    guard = Guard(TokenFile(path))
    assert guard.check("inference", f"Bearer {scorer}") == "scorer"
    assert guard.check("inference", f"bearer  {scorer} ") == "scorer"
    assert guard.check("health", None) == ""  # open by default
    with pytest.raises(Unauthorized, match="required"):
        guard.check("inference", None)
    with pytest.raises(Unauthorized, match="not valid"):
        guard.check("inference", "Bearer nope")
    with pytest.raises(Unauthorized, match="not valid"):
        guard.check("inference", f"Basic {scorer}")
    with pytest.raises(Forbidden, match="lacks the 'admin' scope"):
        guard.check("admin", f"Bearer {scorer}")
    with pytest.raises(Forbidden, match="model control is off"):  # no admin token exists
        guard.check("model_control", f"Bearer {scorer}")
    admin = add_token(path, "operator", ["admin"])
    guard.reload()
    assert guard.check("model_control", f"Bearer {admin}") == "operator"


def test_open_endpoints_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    add_token(path, "scorer", ["inference"])
    guard = Guard(TokenFile(path), open_endpoints=("inference",))
    assert guard.check("inference", None) == ""
    with pytest.raises(Unauthorized):
        guard.check("health", None)


def test_exposure(caplog: pytest.LogCaptureFixture) -> None:
    check_exposure(ServerSettings(host="127.0.0.1"))
    check_exposure(ServerSettings(host="0.0.0.0"))
    assert "without TLS or tokens" in caplog.text
    with pytest.raises(ConfigError, match="require-auth"):
        check_exposure(ServerSettings(host="0.0.0.0", require_auth=True))


def test_settings_validation() -> None:
    with pytest.raises(ConfigError, match="go together"):
        ServerSettings(tls_cert="c.pem")
    with pytest.raises(ConfigError, match="unknown endpoint class"):
        ServerSettings(open_endpoints="health,everything")
    env = {"SLUICE_TOKENS_FILE": "/x.toml", "SLUICE_MODEL_CONTROL": "true"}
    settings = ServerSettings.from_env({}, env)
    assert settings.tokens_file == "/x.toml" and settings.model_control is True
