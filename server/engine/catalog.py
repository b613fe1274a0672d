"""What the engine should serve, told by whoever owns that truth: the repository layout on
disk, or the model registry. The engine never imports a store; it is handed a ``Catalog``."""

from __future__ import annotations

from typing import Protocol

from .repository import ModelPlan

__all__ = ["Catalog", "ModelPlan"]


class Catalog(Protocol):
    def names(self) -> list[str]:
        """Every model the catalog knows, served or not."""
        ...

    def versions(self, name: str) -> list[str]:
        """Every known version of ``name``, oldest first."""
        ...

    def plans(self) -> dict[str, ModelPlan]:
        """What should be served now. May block (a database read): call it off the loop."""
        ...

    def report(self, action: str, name: str, version: str | None, reason: str, actor: str) -> None:
        """Record what the server did (load, unload, load_failed). May block."""
        ...
