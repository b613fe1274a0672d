"""Client TLS contexts: the system's roots, or only ``--ca``, with ALPN for the protocol."""

from __future__ import annotations

import ssl
from pathlib import Path

from server.errors import ConfigError


def client_context(ca: Path | None, alpn: list[str]) -> ssl.SSLContext:
    """Verify the server against ``ca`` (or the system store) and offer ``alpn``."""
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"--ca {ca}: not a PEM certificate file ({exc})") from exc
    context.set_alpn_protocols(alpn)
    return context
