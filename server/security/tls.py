"""TLS for both edges: one server context (TLS 1.2 minimum, AEAD ciphers only, no
renegotiation or compression, mutual TLS when a client CA is given)."""

from __future__ import annotations

import ssl
from pathlib import Path

from server.errors import ConfigError

# TLS 1.2 suites with forward secrecy and an AEAD cipher; TLS 1.3's are all AEAD already.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def server_context(
    cert: str, key: str, client_ca: str = "", alpn: tuple[str, ...] = ()
) -> ssl.SSLContext:
    """A server-side context for ``cert``/``key``; ``client_ca`` requires client certificates
    signed by it; ``alpn`` are the protocols offered (the native gRPC edge offers only h2)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(cert, key)
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate, key or client CA: {exc}") from exc
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def read_pem(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
