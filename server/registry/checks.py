"""What a file must pass before the registry writes anything: it loads in ONNX Runtime and
answers one warm-up inference; a config parses."""

from __future__ import annotations

from pathlib import Path

from server.engine.session import OrtSession
from server.errors import ConfigError, InvalidInput, SluiceError
from server.settings import ModelConfig, RuntimeConfig


def check_model(name: str, path: Path) -> None:
    if not path.is_file():
        raise InvalidInput(f"model file '{path}' does not exist")
    try:
        session = OrtSession(path, RuntimeConfig(), name)
        session.warmup()
    except SluiceError as exc:
        raise InvalidInput(f"'{path}' is not a loadable ONNX model: {exc.message}") from exc


def check_config(path: Path) -> None:
    try:
        ModelConfig.from_file(path)
    except ConfigError as exc:
        raise InvalidInput(f"config '{path}' is invalid: {exc.message}") from exc
