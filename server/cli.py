"""``sluice``: argparse → settings → the part that does the work. No logic here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from server import __version__
from server.errors import ConfigError
from server.settings import ModelConfig, ServerSettings, load_environ, read_toml


def _add_serve(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model file or a model repository over HTTP and gRPC",
        description="Serve PATH: one .onnx file (named after the file, version 1) or a "
        "repository REPO/<name>/<version>/model.onnx with optional REPO/<name>/config.toml.",
    )
    p.add_argument("path", help="an .onnx file or a model repository directory")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (default 8001)")
    p.add_argument(
        "--workers",
        type=_count,
        help='server processes sharing the ports (default "auto": one per core the models '
        "leave free; 1 with ephemeral ports)",
    )
    p.add_argument(
        "--cores",
        type=_count,
        help='cores the server may use (default "auto": the affinity mask and cgroup quota)',
    )
    p.add_argument(
        "--config",
        type=Path,
        help="TOML file: [server] settings, and [batching]/[runtime] defaults for every "
        "model without its own config.toml",
    )
    p.add_argument("--max-request-bytes", type=int, help="largest accepted request body")
    p.add_argument(
        "--grpc-max-message-bytes", type=int, help="largest gRPC message, in or out (64 MiB)"
    )
    p.add_argument(
        "--grpc-transport",
        choices=["native", "aio"],
        help="gRPC transport: Sluice's own HTTP/2 (native, default, fastest) or grpc.aio",
    )
    p.add_argument("--drain-timeout-s", type=float, help="how long SIGTERM waits for requests")
    p.add_argument(
        "--webhook",
        action="append",
        dest="webhooks",
        metavar="URL",
        help="POST registry events here (repeatable; signed with --webhook-secret)",
    )
    p.add_argument(
        "--webhook-secret",
        help="Standard Webhooks secret ($SLUICE_WEBHOOK_SECRET; whsec_... or raw)",
    )
    p.add_argument(
        "--registry",
        help="postgresql://... for a registry shared by several servers (default: "
        "REPO/registry.db when it exists; without a registry the latest version is served)",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    _add_security_flags(p)
    p.set_defaults(run=_run_serve)


def _count(text: str) -> int | str:
    """A positive integer or ``auto`` (argparse type)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither 'auto' nor an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 or 'auto', got {value}")
    return value


def _add_security_flags(p: Any) -> None:
    g = p.add_argument_group("security (README: Security)")
    g.add_argument("--tls-cert", help="PEM certificate chain: TLS on both edges")
    g.add_argument("--tls-key", help="PEM private key of --tls-cert")
    g.add_argument("--tls-client-ca", help="PEM CA: clients must present a certificate it signed")
    g.add_argument(
        "--tokens", dest="tokens_file", help="bearer tokens file (TOML; $SLUICE_TOKENS_FILE)"
    )
    g.add_argument(
        "--open-endpoints",
        help="endpoint classes open without a token (default health,metadata,metrics)",
    )
    g.add_argument(
        "--model-control",
        action="store_true",
        default=None,
        help="allow model load/unload without an admin token",
    )
    g.add_argument(
        "--require-auth",
        action="store_true",
        default=None,
        help="refuse to serve a non-loopback address without TLS and tokens",
    )
    g.add_argument("--grpc-max-concurrent-streams", type=int, help="per connection (1024)")
    g.add_argument("--grpc-idle-timeout-s", type=float, help="idle gRPC connections (300)")
    g.add_argument(
        "--grpc-max-buffered-input-bytes", type=int, help="unread input per connection (256 MiB)"
    )
    g.add_argument("--http-keepalive-timeout-s", type=float, help="idle HTTP keep-alive (5)")
    g.add_argument(
        "--http-max-concurrency", type=int, help="HTTP connections + requests (0: no cap)"
    )
    g.add_argument("--http-header-timeout-s", type=float, help="a request's headers (60)")
    g.add_argument("--http-body-timeout-s", type=float, help="between body reads (60)")


_SECURITY_FLAGS = (
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "tokens_file",
    "open_endpoints",
    "model_control",
    "require_auth",
    "grpc_max_concurrent_streams",
    "grpc_idle_timeout_s",
    "grpc_max_buffered_input_bytes",
    "http_keepalive_timeout_s",
    "http_max_concurrency",
    "http_header_timeout_s",
    "http_body_timeout_s",
)


def serve_settings(args: argparse.Namespace) -> ServerSettings:
    file_values: dict[str, Any] = {}
    model_config = ModelConfig()
    if args.config is not None:
        doc = read_toml(args.config)
        model_config = ModelConfig.from_mapping(doc, str(args.config))
        file_values = dict(doc.get("server", {}))
    flags = {
        "model_path": args.path,
        "host": args.host,
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
        "workers": args.workers,
        "cores": args.cores,
        "max_request_bytes": args.max_request_bytes,
        "grpc_max_message_bytes": args.grpc_max_message_bytes,
        "grpc_transport": args.grpc_transport,
        "drain_timeout_s": args.drain_timeout_s,
        "log_level": args.log_level,
        "registry": args.registry,
        "webhooks": args.webhooks,
        "webhook_secret": args.webhook_secret,
        **{name: getattr(args, name) for name in _SECURITY_FLAGS},
    }
    merged = {**file_values, **{k: v for k, v in flags.items() if v is not None}}
    merged["default_model_config"] = model_config
    return ServerSettings.from_env(merged, load_environ())


def _run_serve(args: argparse.Namespace) -> int:
    from server import launch

    return launch.run(serve_settings(args))


def _add_score(subparsers: Any) -> None:
    from server.score_cli import add_score_parser

    add_score_parser(subparsers)


def _add_drift(subparsers: Any) -> None:
    from server.drift_cli import add_drift_parser

    add_drift_parser(subparsers)


def _add_models(subparsers: Any) -> None:
    from server.models_cli import add_models_parser

    add_models_parser(subparsers)


def _add_audit(subparsers: Any) -> None:
    from server.models_cli import add_audit_parser

    add_audit_parser(subparsers)


def _add_pipeline(subparsers: Any) -> None:
    from server.pipeline_cli import add_pipeline_parser

    add_pipeline_parser(subparsers)


def _add_events(subparsers: Any) -> None:
    from server.events_cli import add_events_parser

    add_events_parser(subparsers)


def _add_bench(subparsers: Any) -> None:
    from server.bench_cli import add_bench_parser

    add_bench_parser(subparsers)


def _add_tokens(subparsers: Any) -> None:
    from server.tokens_cli import add_tokens_parser

    add_tokens_parser(subparsers)


def _add_profile(subparsers: Any) -> None:
    from server.profile_cli import add_profile_parser

    add_profile_parser(subparsers)


# Each command's parser is imported only when needed: the drift command's modules load numba
# and pyarrow.dataset (~0.6 s), which ``serve`` and ``score`` should not pay at start.
COMMANDS: dict[str, Callable[[Any], None]] = {
    "serve": _add_serve,
    "score": _add_score,
    "drift": _add_drift,
    "models": _add_models,
    "audit": _add_audit,
    "pipeline": _add_pipeline,
    "events": _add_events,
    "bench": _add_bench,
    "tokens": _add_tokens,
    "profile": _add_profile,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sluice {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, add in COMMANDS.items():
        if only is None or only == name:
            add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"sluice: {exc.message}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
