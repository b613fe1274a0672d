from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import build_parser, main, serve_settings


def test_missing_model_path_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "/no/such/model.onnx", "--http-port", "0", "--grpc-port", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_config_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sluice.toml"
    config.write_text("[batching]\nmax_batch_size = -1\n")
    assert main(["serve", str(tmp_path), "--config", str(config)]) == 2
    assert "max_batch_size must be >= 1" in capsys.readouterr().err


def test_config_file_flags_and_environment_combine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sluice.toml"
    config.write_text("[server]\nhttp_port = 9100\nworkers = 2\n[runtime]\ninstances = 3\n")
    monkeypatch.setenv("SLUICE_GRPC_PORT", "9101")
    args = build_parser().parse_args(["serve", "m.onnx", "--config", str(config), "--workers", "4"])
    settings = serve_settings(args)
    assert (settings.http_port, settings.grpc_port, settings.workers) == (9100, 9101, 4)
    assert settings.default_model_config.runtime.instances == 3


def test_grpc_transport_flag_and_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve_settings(build_parser().parse_args(["serve", "m.onnx"])).grpc_transport == "native"
    args = build_parser().parse_args(["serve", "m.onnx", "--grpc-transport", "aio"])
    assert serve_settings(args).grpc_transport == "aio"
    monkeypatch.setenv("SLUICE_GRPC_TRANSPORT", "grpclib")
    assert main(["serve", str(tmp_path)]) == 2
    assert "grpc_transport must be native or aio" in capsys.readouterr().err
