"""What one ``sluice bench`` run does: one frozen, validated object built at the edge."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from server.errors import ConfigError

Protocol = Literal["http", "grpc"]

# One Python event loop sends ~50k requests/s at the very most (a few µs of Python per request
# beside the syscalls); a rate far above that per process can only be a typing mistake.
MAX_RATE_PER_PROCESS = 100_000.0
# Payloads are encoded once, before the clock starts; this bounds the memory they take.
PAYLOAD_BYTES_LIMIT = 64 << 20


@dataclass(frozen=True, slots=True)
class Step:
    """One load level: a closed loop of ``concurrency`` requests in flight, or an open loop
    sending ``request_rate`` requests per second (evenly spaced, or Poisson)."""

    concurrency: int | None = None
    request_rate: float | None = None
    poisson: bool = False

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.request_rate is None):
            raise ConfigError("a step has either a concurrency or a request rate")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.request_rate is not None and not self.request_rate > 0:
            raise ConfigError(f"request rate must be above 0 per second, got {self.request_rate}")

    @property
    def label(self) -> str:
        if self.concurrency is not None:
            return f"c={self.concurrency}"
        kind = "poisson" if self.poisson else "fixed"
        return f"rate={self.request_rate:g}/s ({kind})"


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Target, payload and schedule. ``url`` is ``HOST:PORT`` (a scheme is tolerated)."""

    url: str
    model: str
    version: str = ""
    protocol: Protocol = "http"
    binary: bool = False
    streaming: bool = False
    steps: tuple[Step, ...] = (Step(concurrency=1),)
    duration_s: float = 10.0
    warmup_s: float = 2.0
    rows: int = 1
    input_path: Path | None = None
    features: tuple[str, ...] | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    processes: int = 0  # 0: chosen from the cores (``default_processes``)
    max_connections: int = 1024  # open loop: connections opened at most, per process
    timeout_s: float = 30.0
    tls: bool = False
    ca: Path | None = None
    token: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        host, _, port = self.address
        if not host or not port.isdigit():
            raise ConfigError(f"--url must be HOST:PORT, got '{self.url}'")
        if not self.model:
            raise ConfigError("--model is required")
        if self.protocol not in ("http", "grpc"):
            raise ConfigError(f"--protocol must be http or grpc, got '{self.protocol}'")
        if self.streaming and self.protocol != "grpc":
            raise ConfigError("--streaming needs --protocol grpc (ModelStreamInfer)")
        if not self.steps:
            raise ConfigError("no load steps: give --concurrency or --request-rate")
        if not self.duration_s > 0:
            raise ConfigError(f"--duration must be above 0, got {self.duration_s}")
        if self.warmup_s < 0:
            raise ConfigError(f"--warmup must not be negative, got {self.warmup_s}")
        if self.rows < 1:
            raise ConfigError(f"--rows must be at least 1, got {self.rows}")
        if self.processes < 0:
            raise ConfigError(f"--processes must be at least 1, got {self.processes}")
        if self.max_connections < 1:
            raise ConfigError("--max-connections must be at least 1")
        if not self.timeout_s > 0:
            raise ConfigError(f"--timeout must be above 0, got {self.timeout_s}")
        if self.ca is not None and not self.tls:
            raise ConfigError("--ca needs --tls")
        if self.ca is not None and not self.ca.is_file():
            raise ConfigError(f"--ca: no such file: {self.ca}")
        if self.input_path is not None and not self.input_path.exists():
            raise ConfigError(f"--input: no such file: {self.input_path}")
        for step in self.steps:
            limit = MAX_RATE_PER_PROCESS * self.process_count
            if step.request_rate is not None and step.request_rate > limit:
                raise ConfigError(
                    f"request rate {step.request_rate:g}/s is more than {self.process_count} "
                    f"client process(es) can send (at most {limit:g}/s); add --processes"
                )

    @property
    def address(self) -> tuple[str, str, str]:
        """``(host, ":", port)`` with any ``http://`` or ``grpc://`` prefix and path removed."""
        text = self.url.split("://", 1)[-1].split("/", 1)[0]
        if text.startswith("["):  # [::1]:8000
            host, _, rest = text[1:].partition("]")
            return host, ":", rest.removeprefix(":")
        return text.rpartition(":") if ":" in text else (text, "", "")

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return int(self.address[2])

    @property
    def process_count(self) -> int:
        return self.processes or default_processes()


def default_processes(cores: int | None = None) -> int:
    """One client process per 8 cores, at least 1, at most 8.

    The server usually shares the machine: one process sends ~20-40k requests/s, more than a
    server on a few cores answers, and each extra process takes cores from the server.
    """
    count = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, min(8, count // 8))
