"""Who may call what: each endpoint's class, the scope it needs, and the check both edges
run when a request's headers arrive, before its body is read.

Without a tokens file every endpoint is open except model control (load/unload), which is
off unless enabled or an admin token exists, as in Triton and TorchServe. With one, every
endpoint needs a token with its scope except those configured open (by default health,
metadata and ``/metrics``).
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Literal, get_args

from server.errors import ConfigError, Forbidden, Unauthorized
from server.settings import ServerSettings

from .tokens import TokenFile

log = logging.getLogger(__name__)

Endpoint = Literal["health", "metadata", "metrics", "inference", "admin", "model_control"]
ENDPOINTS: tuple[str, ...] = get_args(Endpoint)
DEFAULT_OPEN = ("health", "metadata", "metrics")
SCOPE_OF: dict[str, str] = {
    "health": "inference",
    "metadata": "inference",
    "metrics": "admin",
    "inference": "inference",
    "admin": "admin",
    "model_control": "admin",
}

GRPC_ENDPOINTS: dict[str, Endpoint] = {
    "ServerLive": "health",
    "ServerReady": "health",
    "ModelReady": "health",
    "ServerMetadata": "metadata",
    "ModelMetadata": "metadata",
    "ModelInfer": "inference",
    "ModelStreamInfer": "inference",
    "ModelConfig": "admin",
    "ModelStatistics": "admin",
    "RepositoryIndex": "admin",
    "RepositoryModelLoad": "model_control",
    "RepositoryModelUnload": "model_control",
}


def http_endpoint(method: str, path: str) -> Endpoint:
    """The class of an HTTP request; anything unknown needs the inference scope."""
    parts = path.rstrip("/").split("/")[1:]
    if path == "/metrics":
        return "metrics"
    if parts[:2] == ["v2", "health"]:
        return "health"
    if parts[:2] == ["v2", "repository"]:
        if method == "POST" and len(parts) == 5 and parts[4] in ("load", "unload"):
            return "model_control"
        return "admin"
    if parts == ["v2"]:
        return "metadata"
    if parts[:2] == ["v2", "models"] and len(parts) >= 3:
        last = parts[-1]
        if last in ("config", "stats") or parts[2] == "stats":
            return "admin"
        if last == "ready":
            return "health"
        if last == "infer":
            return "inference"
        if len(parts) in (3, 5):
            return "metadata"
    return "inference"


def grpc_endpoint(path: str) -> Endpoint:
    """The class of a gRPC method from its ``:path``; unknown methods need inference."""
    return GRPC_ENDPOINTS.get(path.rsplit("/", 1)[-1], "inference")


class Guard:
    """The check both edges run. ``check`` returns the actor (the token's name, "" when
    the endpoint is open) or raises ``Unauthorized`` (401) / ``Forbidden`` (403)."""

    def __init__(
        self,
        tokens: TokenFile | None = None,
        open_endpoints: tuple[str, ...] = DEFAULT_OPEN,
        model_control: bool = False,
    ) -> None:
        self.tokens = tokens
        self.open = frozenset(open_endpoints)
        self.model_control = model_control

    @property
    def model_control_enabled(self) -> bool:
        return self.model_control or (
            self.tokens is not None and self.tokens.current.has_scope("admin")
        )

    def check(self, endpoint: Endpoint, authorization: str | None) -> str:
        if endpoint == "model_control" and not self.model_control_enabled:
            raise Forbidden(
                "model control is off: start the server with --model-control, "
                "or give a token the admin scope"
            )
        if self.tokens is None:
            return ""
        if endpoint in self.open:
            return self.identify(authorization)
        if not authorization:
            raise Unauthorized("a bearer token is required")
        token = self.tokens.current.authenticate(_bearer(authorization))
        if token is None:
            raise Unauthorized("the bearer token is not valid")
        scope = SCOPE_OF[endpoint]
        if scope not in token.scopes:
            raise Forbidden(f"the token '{token.name}' lacks the '{scope}' scope")
        return token.name

    def identify(self, authorization: str | None) -> str:
        """The name of a valid token, or "": for endpoints that need none."""
        if self.tokens is None or not authorization:
            return ""
        token = self.tokens.current.authenticate(_bearer(authorization))
        return "" if token is None else token.name

    def reload(self) -> None:
        if self.tokens is not None:
            self.tokens.reload()


def _bearer(authorization: str) -> str:
    scheme, _, secret = authorization.strip().partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


def build_guard(settings: ServerSettings) -> Guard:
    """The guard ``settings`` ask for (the tokens file is read now: a bad one stops start)."""
    tokens = TokenFile(Path(settings.tokens_file)) if settings.tokens_file else None
    open_endpoints = tuple(filter(None, settings.open_endpoints.split(",")))
    return Guard(tokens, open_endpoints, settings.model_control)


def check_exposure(settings: ServerSettings) -> None:
    """Warn when a non-loopback address is served without TLS or tokens; with
    ``require_auth``, refuse to start instead."""
    missing = [
        what
        for what, present in (("TLS", settings.tls_cert), ("tokens", settings.tokens_file))
        if not present
    ]
    if not missing or _is_loopback(settings.host):
        return
    message = f"serving {settings.host} without {' or '.join(missing)}"
    if settings.require_auth:
        raise ConfigError(f"{message} (--require-auth)")
    log.warning("%s: anyone who can reach it may call it", message)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
