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


def baseline_file(path: Path, scratch: Path) -> Path:
    """``path`` itself when it is a saved drift baseline, else a baseline built from it as
    reference data (Parquet/Arrow), written under ``scratch``."""
    from server.monitoring.baseline import (
        BaselineOptions,
        build_baseline,
        is_baseline_file,
        save_baseline,
    )
    from server.monitoring.columns import read_table

    if is_baseline_file(str(path)):
        return path
    try:
        table = read_table(str(path))
        built = build_baseline(table, BaselineOptions())
    except SluiceError as exc:
        raise InvalidInput(
            f"baseline '{path}' is neither a saved baseline nor readable data: {exc.message}"
        ) from exc
    target = scratch / "baseline.npz"
    save_baseline(built, target)
    return target
