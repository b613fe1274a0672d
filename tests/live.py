"""A real Sluice server on a loopback port, in a thread of the test process."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

from server.launch import Service
from server.settings import ServerSettings


class LiveServer:
    def __init__(self, path: Path, **settings: object) -> None:
        base = ServerSettings(model_path=str(path), http_port=0, grpc_port=0, log_level="warning")
        self.settings = replace(base, **settings)  # type: ignore[arg-type]
        self.service: Service | None = None
        self.exit_code: int | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        self._thread.join(60)

    @property
    def url(self) -> str:
        assert self.service is not None
        return f"127.0.0.1:{self.service.http_port}"

    @property
    def grpc_url(self) -> str:
        assert self.service is not None
        return f"127.0.0.1:{self.service.grpc_port}"

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        assert self.service is not None
        return self.service.engine

    def _main(self) -> None:
        async def run() -> int:
            self.service = Service(self.settings)
            return await self.service.run(on_ready=lambda _: self._ready.set())

        try:
            self.exit_code = asyncio.run(run())
        finally:
            self._ready.set()
