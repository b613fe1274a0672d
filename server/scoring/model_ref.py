"""Which model file a job scores with: ``PATH`` or ``NAME[:VERSION]`` in a repository.

A repository is ``REPO/<name>/<version>/model.onnx`` plus an optional ``REPO/<name>/config.toml``;
a name without a version means the highest numeric version directory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from server.errors import ConfigError, ModelNotFound
from server.settings import ModelConfig, RuntimeConfig

MODEL_FILE = "model.onnx"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A resolved model: its file, display name, version, runtime settings and content hash."""

    path: Path
    name: str
    version: str
    runtime: RuntimeConfig
    sha256: str


def resolve_model(spec: str, repository: Path | None) -> ModelRef:
    """Find the model a ``--model`` value names; ``ModelNotFound``/``ConfigError`` if it cannot."""
    if repository is None:
        path = Path(spec)
        if path.is_dir() and (path / MODEL_FILE).is_file():
            path = path / MODEL_FILE
        if not path.is_file():
            raise ModelNotFound(
                f"--model {spec}: no such model file (give --repository REPO to look up a name)"
            )
        return ModelRef(path, path.stem, "", RuntimeConfig(), _sha256(path))
    if not repository.is_dir():
        raise ConfigError(f"--repository {repository}: not a directory")
    name, _, version = spec.partition(":")
    folder = repository / name
    if not name or not folder.is_dir():
        raise ModelNotFound(f"model '{name}' is not in repository {repository}")
    if not version:
        version = _latest_version(folder)
    path = folder / version / MODEL_FILE
    if not path.is_file():
        raise ModelNotFound(f"model '{name}' has no version {version} ({path} is missing)")
    config = folder / "config.toml"
    runtime = ModelConfig.from_file(config).runtime if config.is_file() else RuntimeConfig()
    return ModelRef(path, name, version, runtime, _sha256(path))


def _latest_version(folder: Path) -> str:
    versions = [p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise ModelNotFound(f"model '{folder.name}' has no numeric version directory in {folder}")
    return max(versions, key=int)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
