"""Configuration: frozen, typed, validated on construction.

Server settings come from CLI flags and ``SLUICE_*`` environment variables (read only in
``from_env``, called by the CLI). Per-model settings come from ``REPO/<name>/config.toml``
with ``[batching]`` and ``[runtime]`` tables; every field has a default, so a bare
``model.onnx`` needs none.

``workers``, ``cores``, ``instances`` and the ONNX Runtime thread counts accept ``"auto"`` (the
default; stored as ``AUTO``, 0) and are resolved from the cores the process may use
(``server.resources``) by ``ServerSettings.resolved`` and ``RuntimeConfig.resolved``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from server.errors import ConfigError

GraphOptimization = Literal["disable", "basic", "extended", "all"]
ExecutionMode = Literal["sequential", "parallel"]
KNOWN_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "OpenVINOExecutionProvider",
    "DnnlExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)


# "auto" in TOML, flags and SLUICE_* variables; 0 in the typed fields until resolved.
AUTO = 0
# Each worker loads its own copy of every model and batches only its own connections'
# requests, so "auto" stops adding workers here and gives further cores to instances.
MAX_AUTO_WORKERS = 8
_AUTO_FIELDS = frozenset({"workers", "cores", "instances", "intra_op_threads", "inter_op_threads"})


def _normalise_auto(obj: object) -> None:
    """Turn ``"auto"`` into ``AUTO`` in a frozen dataclass's auto-able fields."""
    for name in _AUTO_FIELDS:
        if getattr(obj, name, None) == "auto":
            object.__setattr__(obj, name, AUTO)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """Dynamic batching for one model version (Triton's dynamic_batching semantics).

    Batch sizes count rows of the batch dimension, not requests.
    """

    enabled: bool = True
    max_batch_size: int = 64
    # 0: a batch leaves as soon as an instance is free, so an idle model adds no delay and a
    # busy one batches whatever queued while it ran.
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    default_timeout_ms: int = 0  # 0: no timeout
    priority_levels: int = 1
    default_priority: int = 1

    def __post_init__(self) -> None:
        _require(self.max_batch_size >= 1, "batching.max_batch_size must be >= 1")
        _require(self.max_queue_delay_us >= 0, "batching.max_queue_delay_us must be >= 0")
        _require(self.max_queue_size >= 1, "batching.max_queue_size must be >= 1")
        _require(self.default_timeout_ms >= 0, "batching.default_timeout_ms must be >= 0")
        _require(self.priority_levels >= 1, "batching.priority_levels must be >= 1")
        _require(
            1 <= self.default_priority <= self.priority_levels,
            "batching.default_priority must be between 1 and priority_levels",
        )
        for size in self.preferred_batch_sizes:
            _require(
                1 <= size <= self.max_batch_size,
                f"batching.preferred_batch_sizes: {size} is not within 1..max_batch_size "
                f"({self.max_batch_size})",
            )


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """ONNX Runtime session options and the number of concurrent instances."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    provider_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # AUTO ("auto"): resolved from the worker's cores by ``resolved``.
    instances: int = AUTO
    intra_op_threads: int = AUTO
    inter_op_threads: int = AUTO
    # Spinning threads starve the HTTP front end (see benchmarks/README.md).
    allow_spinning: bool = False
    execution_mode: ExecutionMode = "sequential"
    graph_optimization: GraphOptimization = "all"
    memory_arena: bool = True
    memory_pattern: bool = True
    warmup: bool = True

    def __post_init__(self) -> None:
        _normalise_auto(self)
        for name in ("instances", "intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                f'runtime.{name} must be "auto" or an integer >= 1, got {value!r}',
            )
        _require(len(self.providers) >= 1, "runtime.providers must name at least one provider")
        for name in self.providers:
            _require(
                name in KNOWN_PROVIDERS,
                f"runtime.providers: unknown provider '{name}' "
                f"(known: {', '.join(KNOWN_PROVIDERS)})",
            )
        for name in self.provider_options:
            _require(
                name in self.providers,
                f"runtime.provider_options: '{name}' is not in runtime.providers",
            )
        _require(
            self.graph_optimization in typing.get_args(GraphOptimization),
            "runtime.graph_optimization must be one of disable, basic, extended, all",
        )
        _require(
            self.execution_mode in typing.get_args(ExecutionMode),
            "runtime.execution_mode must be sequential or parallel",
        )

    def resolved(self, cores: int) -> RuntimeConfig:
        """``AUTO`` fields chosen for a worker that may use ``cores`` cores; set ones kept.

        The cores go to instances, one intra-op thread each, so instances x intra-op threads
        <= cores: on the reference MLP at batch 64, two 1-thread sessions side by side ran
        68.2k rows/s against 39.6k for one 2-thread session (benchmarks/results/
        serve-20261122-1512.json, ``limit``), as in batch scoring (server/scoring/threads.py).
        Inter-op threads only run in parallel execution mode; they get the cores left over.
        """
        instances = self.instances or max(1, cores // (self.intra_op_threads or 1))
        intra = self.intra_op_threads or max(1, cores // instances)
        inter = self.inter_op_threads or max(1, cores // (instances * intra))
        return dataclasses.replace(
            self, instances=instances, intra_op_threads=intra, inter_op_threads=inter
        )


DriftStatistic = Literal["psi", "js", "ks", "wasserstein_normed"]
CaptureCompression = Literal["none", "snappy", "lz4", "zstd"]
DRIFT_STATISTICS: tuple[DriftStatistic, ...] = ("psi", "js", "ks", "wasserstein_normed")


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """``[capture]``: which requests are kept as Parquet rows, and where.

    Sampling is deterministic by request id, so a request is captured whole or not at all, on
    every worker. ``columns_allow`` empty means every input and output tensor.
    """

    enabled: bool = False
    sample_rate: float = 1.0
    path: str = ""
    max_file_mb: float = 64.0
    max_file_seconds: float = 300.0
    queue_rows: int = 10_000
    include_outputs: bool = True
    capture_errors: bool = False
    columns_allow: tuple[str, ...] = ()
    columns_deny: tuple[str, ...] = ()
    hash_columns: tuple[str, ...] = ()
    compression: CaptureCompression = "snappy"
    required: bool = True

    def __post_init__(self) -> None:
        _require(0.0 <= self.sample_rate <= 1.0, "capture.sample_rate must be within 0..1")
        _require(not self.enabled or bool(self.path), "capture.path is required when enabled")
        _require(self.max_file_mb > 0, "capture.max_file_mb must be > 0")
        _require(self.max_file_seconds > 0, "capture.max_file_seconds must be > 0")
        _require(self.queue_rows >= 1, "capture.queue_rows must be >= 1")


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """``[drift]``: online drift of the sampled inputs against a baseline file.

    A feature breaches when a statistic in ``statistics`` reaches its threshold (for a window of
    at most ``small_sample_rows`` rows, when its Benjamini-Hochberg adjusted KS p-value is below
    ``p_value``); it fires after ``alert_after`` breaches within the last ``alert_window``
    evaluations and resolves after ``resolve_after`` clean ones in a row.
    """

    enabled: bool = False
    baseline: str = ""
    window_seconds: float = 300.0
    evaluate_every_s: float = 60.0
    min_rows: int = 100
    reservoir_rows: int = 100_000
    sample_rate: float = 1.0
    statistics: tuple[DriftStatistic, ...] = ("psi",)
    psi: float = 0.25
    psi_warn: float = 0.1
    wasserstein_normed: float = 0.1
    js: float = 0.1
    ks: float = 0.1
    small_sample_rows: int = 1000
    p_value: float = 0.05
    dataset_share: float = 0.5
    alert_after: int = 3
    alert_window: int = 3
    resolve_after: int = 3
    required: bool = True

    def __post_init__(self) -> None:
        # An empty baseline means the one registered with the model version (registry).
        _require(self.window_seconds > 0, "drift.window_seconds must be > 0")
        _require(self.evaluate_every_s > 0, "drift.evaluate_every_s must be > 0")
        _require(
            self.evaluate_every_s <= self.window_seconds,
            "drift.evaluate_every_s must be <= drift.window_seconds",
        )
        _require(self.min_rows >= 1, "drift.min_rows must be >= 1")
        _require(self.reservoir_rows >= 1, "drift.reservoir_rows must be >= 1")
        _require(0.0 <= self.sample_rate <= 1.0, "drift.sample_rate must be within 0..1")
        _require(len(self.statistics) >= 1, "drift.statistics must name at least one statistic")
        for name in self.statistics:
            _require(
                name in DRIFT_STATISTICS,
                f"drift.statistics: unknown statistic '{name}' "
                f"(known: {', '.join(DRIFT_STATISTICS)})",
            )
        for key in (*DRIFT_STATISTICS, "psi_warn"):
            _require(getattr(self, key) > 0, f"drift.{key} must be > 0")
        _require(self.small_sample_rows >= 0, "drift.small_sample_rows must be >= 0")
        _require(0.0 < self.p_value < 1.0, "drift.p_value must be between 0 and 1")
        _require(0.0 < self.dataset_share <= 1.0, "drift.dataset_share must be in (0, 1]")
        _require(
            1 <= self.alert_after <= self.alert_window,
            "drift.alert_after must be between 1 and drift.alert_window",
        )
        _require(self.resolve_after >= 1, "drift.resolve_after must be >= 1")

    def threshold(self, statistic: DriftStatistic) -> float:
        value: float = getattr(self, statistic)
        return value


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Everything configurable about one model; ``config.toml`` maps onto it one-to-one."""

    batching: BatchingConfig = field(default_factory=BatchingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "config") -> ModelConfig:
        unknown = set(data) - {"batching", "runtime", "capture", "drift", "server"}
        _require(not unknown, f"{where}: unknown section(s) {sorted(unknown)}")
        return cls(
            batching=_build(BatchingConfig, data.get("batching", {}), f"{where} [batching]"),
            runtime=_build(RuntimeConfig, data.get("runtime", {}), f"{where} [runtime]"),
            capture=_build(CaptureConfig, data.get("capture", {}), f"{where} [capture]"),
            drift=_build(DriftConfig, data.get("drift", {}), f"{where} [drift]"),
        )

    @classmethod
    def from_file(cls, path: Path) -> ModelConfig:
        return cls.from_mapping(read_toml(path), str(path))


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How the server process runs. CLI flags and ``SLUICE_*`` variables map onto fields."""

    model_path: str = ""
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    # AUTO ("auto"): resolved by ``resolved`` from the cores the process may use.
    workers: int = AUTO
    cores: int = AUTO
    max_request_bytes: int = 64 * 1024 * 1024
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    grpc_transport: Literal["native", "aio"] = "native"
    drain_timeout_s: float = 30.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Key of the keyed hash that [capture] hash_columns apply (SLUICE_CAPTURE_HASH_KEY).
    capture_hash_key: str = field(default="", repr=False)
    default_model_config: ModelConfig = field(default_factory=ModelConfig)
    # A postgresql:// URL for a shared registry; "" means REPO/registry.db when it exists.
    registry: str = ""
    # How often the server polls the registry for deploys, undeploys and alias moves.
    registry_poll_s: float = 0.5
    # The audit chain's HMAC key ($SLUICE_AUDIT_KEY); "" means the key file beside the registry.
    audit_key: str = field(default="", repr=False)
    # Registry events are POSTed to these (Standard Webhooks signatures with the secret).
    webhooks: tuple[str, ...] = ()
    webhook_secret: str = field(default="", repr=False)
    # Security (README "Security"): TLS on both edges, bearer tokens with scopes.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""  # given: clients must present a certificate it signed
    tokens_file: str = ""
    open_endpoints: str = "health,metadata,metrics"  # open without a token, when tokens are on
    model_control: bool = False  # load/unload without an admin token
    require_auth: bool = False  # refuse to start on a non-loopback address without TLS+tokens
    # Per-connection limits of the native gRPC edge (server/grpc/connection.py).
    grpc_max_concurrent_streams: int = 1024
    grpc_max_buffered_input_bytes: int = 256 << 20
    grpc_idle_timeout_s: float = 300.0
    # HTTP/1.1: idle keep-alive and the cap on connections plus requests in flight (0: none).
    http_keepalive_timeout_s: float = 5.0
    http_max_concurrency: int = 0
    http_header_timeout_s: float = 60.0  # a request's headers, whole (nginx's default)
    http_body_timeout_s: float = 60.0  # between two reads of a request's body

    def __post_init__(self) -> None:
        _require(bool(self.tls_cert) == bool(self.tls_key), "tls_cert and tls_key go together")
        _require(not self.tls_client_ca or bool(self.tls_cert), "tls_client_ca needs tls_cert")
        for name in filter(None, self.open_endpoints.split(",")):
            _require(
                name in ("health", "metadata", "metrics", "inference", "admin"),
                f"open_endpoints: unknown endpoint class '{name}' "
                "(health, metadata, metrics, inference, admin)",
            )
        _require(self.grpc_max_concurrent_streams >= 1, "grpc_max_concurrent_streams must be >= 1")
        _require(
            self.grpc_max_buffered_input_bytes >= self.grpc_max_message_bytes,
            "grpc_max_buffered_input_bytes must be >= grpc_max_message_bytes",
        )
        _require(self.grpc_idle_timeout_s > 0, "grpc_idle_timeout_s must be > 0")
        _require(self.http_keepalive_timeout_s > 0, "http_keepalive_timeout_s must be > 0")
        _require(self.http_header_timeout_s > 0, "http_header_timeout_s must be > 0")
        _require(self.http_body_timeout_s > 0, "http_body_timeout_s must be > 0")
        _require(self.http_max_concurrency >= 0, "http_max_concurrency must be >= 0")
        for name in ("http_port", "grpc_port"):
            port = getattr(self, name)
            _require(0 <= port <= 65535, f"{name} must be within 0..65535, got {port}")
        _normalise_auto(self)
        for name in ("workers", "cores"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                f'{name} must be "auto" or an integer >= 1, got {value!r}',
            )
        _require(self.max_request_bytes >= 1024, "max_request_bytes must be >= 1024")
        _require(self.grpc_max_message_bytes >= 1024, "grpc_max_message_bytes must be >= 1024")
        _require(self.grpc_transport in ("native", "aio"), "grpc_transport must be native or aio")
        _require(self.drain_timeout_s >= 0, "drain_timeout_s must be >= 0")
        _require(0 < self.registry_poll_s <= 60, "registry_poll_s must be within (0, 60]")
        _require(
            self.log_level in ("debug", "info", "warning", "error"),
            "log_level must be one of debug, info, warning, error",
        )

    @classmethod
    def from_env(cls, overrides: Mapping[str, Any], environ: Mapping[str, str]) -> ServerSettings:
        """Defaults < ``SLUICE_<FIELD>`` variables < ``overrides`` (CLI flags that were given)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"SLUICE_{f.name.upper()}")
            if raw is not None and f.name != "default_model_config":
                values[f.name] = _parse_env(raw, f.type, f"SLUICE_{f.name.upper()}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("webhooks"), str):  # SLUICE_WEBHOOKS=url1,url2
            values["webhooks"] = [u.strip() for u in values["webhooks"].split(",") if u.strip()]
        if "webhooks" in values:
            _require(
                isinstance(values["webhooks"], list | tuple)
                and all(isinstance(u, str) for u in values["webhooks"]),
                "webhooks must be a list of URLs",
            )
            values["webhooks"] = tuple(values["webhooks"])
        return cls(**values)

    def resolved(self, usable_cores: int) -> ServerSettings:
        """``cores`` and ``workers`` made concrete; ``usable_cores`` is what the process may use.

        Auto workers: one per core left after the default model config's explicit instances
        and intra-op threads (the HTTP front end is GIL-bound: 2 workers served 1.8x the 1-row
        requests of 1 on 2 cores, benchmarks/README.md), so workers x instances x intra-op
        threads <= cores; past ``MAX_AUTO_WORKERS``, the largest count up to it that divides
        the cores evenly (12 cores: 6 workers of 2). Ephemeral ports (0) cannot be shared, so
        they get one worker.
        """
        cores = self.cores or usable_cores
        workers = self.workers
        if workers == AUTO:
            runtime = self.default_model_config.runtime
            per_worker = max(1, runtime.instances) * max(1, runtime.intra_op_threads)
            shared_ports = self.http_port != 0 and self.grpc_port != 0
            slots = max(1, cores // per_worker)
            fits = [w for w in range(1, MAX_AUTO_WORKERS + 1) if slots % w == 0]
            workers = (slots if slots <= MAX_AUTO_WORKERS else fits[-1]) if shared_ports else 1
        return dataclasses.replace(self, cores=cores, workers=workers)

    @property
    def cores_per_worker(self) -> int:
        """The cores each worker's models may use (after ``resolved``)."""
        return max(1, self.cores // max(1, self.workers))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from exc


def load_environ() -> Mapping[str, str]:
    """The process environment; only the CLI calls this."""
    return os.environ


T = TypeVar("T")


def _build(cls: type[T], data: Any, where: str) -> T:
    _require(isinstance(data, Mapping), f"{where} must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    _require(not unknown, f"{where}: unknown key(s) {sorted(unknown)} (known: {sorted(names)})")
    values = {
        # Counts that may be "auto" are checked by the class, which names both forms.
        key: value if key in _AUTO_FIELDS else _coerce(value, hints[key], f"{where} {key}")
        for key, value in data.items()
    }
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        _require(value in typing.get_args(hint), f"{where}: must be one of {typing.get_args(hint)}")
        return value
    if origin is tuple:
        _require(isinstance(value, list | tuple), f"{where}: must be a list")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(v, item, where) for v in value)
    if origin in (Mapping, dict) or hint is dict:
        _require(isinstance(value, Mapping), f"{where}: must be a table")
        return {str(k): dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
    if isinstance(hint, types.UnionType):
        return value
    if hint is bool:
        _require(isinstance(value, bool), f"{where}: must be true or false")
    elif hint is int:
        _require(
            isinstance(value, int) and not isinstance(value, bool), f"{where}: must be an integer"
        )
    elif hint is float:
        _require(isinstance(value, int | float), f"{where}: must be a number")
        return float(value)
    elif hint is str:
        _require(isinstance(value, str), f"{where}: must be a string")
    return value


def _parse_env(raw: str, hint: Any, where: str) -> Any:
    auto_field = where.removeprefix("SLUICE_").lower() in _AUTO_FIELDS
    if auto_field and raw.strip().lower() == "auto":
        return "auto"
    if hint in ("bool", bool):
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"{where}: '{raw}' is not true or false")
        return raw.lower() in ("1", "true", "yes")
    if hint in ("int", int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{where}: '{raw}' is not an integer") from None
    if hint in ("float", float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{where}: '{raw}' is not a number") from None
    return raw
