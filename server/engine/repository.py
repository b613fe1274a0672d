"""Where models live on disk: one ``.onnx`` file, or ``REPO/<name>/<version>/model.onnx``.

A repository's model may carry ``REPO/<name>/config.toml``; without a registry the latest
(highest numeric) version of each model is served.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from server.errors import ConfigError, ModelNotFound
from server.resources import usable_cores
from server.settings import ModelConfig

log = logging.getLogger(__name__)
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.toml"


@dataclass(frozen=True, slots=True)
class ModelSource:
    name: str
    version: str
    path: Path
    config: ModelConfig


class Repository:
    """Reads the layout afresh on each call, so models added on disk appear on ``load``.

    ``cores``: what each model's ``"auto"`` runtime settings are resolved for (this worker's
    share of the machine; ``None``: every core this process may use), one of ``workers``
    server processes (shown by the model config endpoint).
    """

    def __init__(
        self,
        path: Path,
        default_config: ModelConfig | None = None,
        cores: int | None = None,
        workers: int = 1,
    ) -> None:
        if not path.exists():
            raise ConfigError(f"model path '{path}' does not exist")
        if path.is_file() and path.suffix != ".onnx":
            raise ConfigError(f"model path '{path}' is neither an .onnx file nor a directory")
        self.path = path
        self.default_config = default_config or ModelConfig()
        self.cores = cores or usable_cores().count
        self.workers = workers

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
            return ModelSource(name, version, self.path, self._resolved(name, self.default_config))
        config_path = self.path / name / CONFIG_FILE
        config = ModelConfig.from_file(config_path) if config_path.exists() else self.default_config
        path = self.path / name / version / MODEL_FILE
        return ModelSource(name, version, path, self._resolved(name, config))

    def _resolved(self, name: str, config: ModelConfig) -> ModelConfig:
        runtime = config.runtime.resolved(self.cores)
        log.info(
            "model '%s': %d instance(s) x %d intra-op thread(s), %d inter-op (for %d core(s))",
            name,
            runtime.instances,
            runtime.intra_op_threads,
            runtime.inter_op_threads,
            self.cores,
        )
        return dataclasses.replace(config, runtime=runtime)

    def _version_dirs(self, name: str) -> list[Path]:
        model_dir = self.path / name
        if "/" in name or name.startswith(".") or not model_dir.is_dir():
            return []
        found = [d for d in model_dir.iterdir() if d.name.isdigit() and (d / MODEL_FILE).is_file()]
        return sorted(found, key=lambda d: int(d.name))
