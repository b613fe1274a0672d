"""Which model file a job scores with: ``PATH`` or ``NAME[:VERSION|@ALIAS]`` in a repository.

A repository is ``REPO/<name>/<version>/model.onnx`` plus an optional ``REPO/<name>/config.toml``;
a name without a version means the highest numeric version directory. A repository with a
registry (``REPO/registry.db`` or ``--registry postgresql://...``) resolves through it: a bare
name means the ``production`` alias when set, else the highest registered version, and the
file must still hash to what the registry recorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from server.errors import ConfigError, ModelNotFound
from server.registry import PRODUCTION, open_registry
from server.registry import exists as registry_exists
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


def resolve_model(spec: str, repository: Path | None, registry: str | None = None) -> ModelRef:
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
    if registry_exists(repository, registry):
        return _from_registry(spec, repository, registry)
    if "@" in spec:
        raise ConfigError(f"--model {spec}: aliases need a registry ({repository} has none)")
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


def _from_registry(spec: str, repository: Path, database: str | None) -> ModelRef:
    name, _, alias = spec.partition("@")
    name, _, version = name.partition(":")
    if version and not version.isdigit():
        raise ConfigError(f"--model {spec}: version '{version}' is not a number")
    with open_registry(repository, database) as registry:
        if alias or version:
            info = registry.get(name, int(version) if version else None, alias or None)
        else:
            try:
                info = registry.get(name, alias=PRODUCTION)
            except ModelNotFound:
                info = registry.get(name)
        directory = Path(registry.artifacts.version_dir(info.name, info.version))
    path = directory / MODEL_FILE
    digest = _sha256(path)
    if digest != info.sha256:
        raise ConfigError(
            f"model '{name}' version {info.version}: {path} has sha256 {digest}, the registry "
            f"recorded {info.sha256}; refusing to score with it"
        )
    config = directory / "config.toml"
    if not config.is_file():
        config = repository / name / "config.toml"
    runtime = ModelConfig.from_file(config).runtime if config.is_file() else RuntimeConfig()
    return ModelRef(path, name, str(info.version), runtime, digest)


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
