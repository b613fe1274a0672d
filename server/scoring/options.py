"""The frozen object a scoring job is configured by; the CLI builds it, nothing reads flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from server.errors import ConfigError

OnError = Literal["fail", "skip"]
Engine = Literal["local", "ray"]

DEFAULT_BATCH_SIZE = 4096


@dataclass(frozen=True, slots=True)
class ScoreOptions:
    """Everything ``sluice score`` accepts; validated on construction.

    ``intra_op_threads`` and ``instances`` of ``None`` mean "choose for this machine"
    (see ``server.scoring.threads``); ``max_errors`` of ``None`` means no limit.
    """

    model: str
    inputs: tuple[Path, ...]
    output: Path
    repository: Path | None = None
    registry: str | None = None
    features: tuple[str, ...] | None = None
    keep: tuple[str, ...] = ()
    batch_size: int = DEFAULT_BATCH_SIZE
    on_error: OnError = "fail"
    max_errors: int | None = None
    overwrite: bool = False
    engine: Engine = "local"
    intra_op_threads: int | None = None
    instances: int | None = None
    read_ahead: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("--model is required")
        if not self.inputs:
            raise ConfigError("--input needs at least one file or directory")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.on_error not in ("fail", "skip"):
            raise ConfigError(f"--on-error must be fail or skip, got '{self.on_error}'")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"--engine must be local or ray, got '{self.engine}'")
        if self.max_errors is not None:
            if self.max_errors < 0:
                raise ConfigError(f"--max-errors must be >= 0, got {self.max_errors}")
            if self.on_error != "skip":
                raise ConfigError("--max-errors only applies with --on-error skip")
        if self.features is not None and not self.features:
            raise ConfigError("--features must name at least one column")
        for flag, names in (("--features", self.features or ()), ("--keep", self.keep)):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ConfigError(f"{flag} names a column twice: {', '.join(duplicates)}")
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise ConfigError("--intra-op-threads must be >= 1")
        if self.instances is not None and self.instances < 1:
            raise ConfigError("--instances must be >= 1")
        if self.read_ahead < 1:
            raise ConfigError("--read-ahead must be >= 1")
