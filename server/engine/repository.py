"""Where models live on disk: one ``.onnx`` file, or ``REPO/<name>/<version>/model.onnx``.

A repository's model may carry ``REPO/<name>/config.toml``; without a registry the latest
(highest numeric) version of each model is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from server.errors import ConfigError, ModelNotFound
from server.settings import ModelConfig

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.toml"


@dataclass(frozen=True, slots=True)
class ModelSource:
    name: str
    version: str
    path: Path
    config: ModelConfig
    sha256: str = ""  # when set, the file must hash to it or the version is refused


@dataclass(frozen=True, slots=True)
class ModelPlan:
    """The versions of one model to serve, and the one a request without a version gets."""

    name: str
    versions: dict[str, ModelSource]
    default: str
    # A rollout's traffic policy: percent of the requests without a version per version
    # (empty: all to ``default``), the version that gets a copy of ``mirror_percent`` of
    # them, and the header whose value keeps one caller on one version.
    weights: dict[str, int] = field(default_factory=dict)
    mirror: str = ""
    mirror_percent: int = 0
    sticky: str = ""


class Repository:
    """Reads the layout afresh on each call, so models added on disk appear on ``load``."""

    def __init__(self, path: Path, default_config: ModelConfig | None = None) -> None:
        if not path.exists():
            raise ConfigError(f"model path '{path}' does not exist")
        if path.is_file() and path.suffix != ".onnx":
            raise ConfigError(f"model path '{path}' is neither an .onnx file nor a directory")
        self.path = path
        self.default_config = default_config or ModelConfig()

    @property
    def single_file(self) -> bool:
        return self.path.is_file()

    def names(self) -> list[str]:
        if self.single_file:
            return [self.path.stem]
        return sorted(
            d.name for d in self.path.iterdir() if d.is_dir() and self._version_dirs(d.name)
        )

    def versions(self, name: str) -> list[str]:
        """Available versions, oldest first."""
        if self.single_file:
            return ["1"] if name == self.path.stem else []
        return [d.name for d in self._version_dirs(name)]

    def source(self, name: str, version: str = "") -> ModelSource:
        versions = self.versions(name)
        if not versions:
            raise ModelNotFound(f"model '{name}' is not in the repository")
        version = version or versions[-1]
        if version not in versions:
            raise ModelNotFound(f"model '{name}' has no version '{version}'")
        if self.single_file:
            return ModelSource(name, version, self.path, self.default_config)
        config_path = self.path / name / CONFIG_FILE
        config = ModelConfig.from_file(config_path) if config_path.exists() else self.default_config
        return ModelSource(name, version, self.path / name / version / MODEL_FILE, config)

    def plans(self) -> dict[str, ModelPlan]:
        """Without a registry, the latest version of every model is served."""
        plans = {}
        for name in self.names():
            source = self.source(name)
            plans[name] = ModelPlan(name, {source.version: source}, source.version)
        return plans

    def report(self, action: str, name: str, version: str | None, reason: str, actor: str) -> None:
        """Nothing records what a registry-less server does beyond its log."""

    def _version_dirs(self, name: str) -> list[Path]:
        model_dir = self.path / name
        if "/" in name or name.startswith(".") or not model_dir.is_dir():
            return []
        found = [d for d in model_dir.iterdir() if d.name.isdigit() and (d / MODEL_FILE).is_file()]
        return sorted(found, key=lambda d: int(d.name))
