"""The HTTP edge's access check: run on the request's headers, before its body is read or
anything is queued; a refusal is 401 with ``WWW-Authenticate: Bearer`` or 403."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from server.errors import SluiceError, Unauthorized
from server.security.access import Guard, http_endpoint

from .errors import error_body

ACTOR = "sluice.actor"  # the scope key holding the authenticated token's name
_AUTHORIZATION = b"authorization"


async def admitted(guard: Guard, scope: MutableMapping[str, Any], send: Any) -> bool:
    """Check ``scope``'s request; answer a refusal and return False, or record the actor."""
    authorization = None
    for key, value in scope["headers"]:
        if key == _AUTHORIZATION:
            authorization = value.decode("latin-1")
            break
    try:
        scope[ACTOR] = guard.check(http_endpoint(scope["method"], scope["path"]), authorization)
    except SluiceError as exc:
        status, body = error_body(exc)
        headers = [(b"content-type", b"application/json")]
        if isinstance(exc, Unauthorized):
            headers.append((b"www-authenticate", b'Bearer realm="sluice"'))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return False
    return True
