"""The HTTP edge's one error table: domain errors → status and ``{"error": "..."}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson

from server.errors import SluiceError

log = logging.getLogger(__name__)

INTERNAL = b'{"error":"internal error; see the server log"}'


def error_body(exc: BaseException) -> tuple[int, bytes]:
    """Status and JSON body for any exception; unknown ones are logged once, never echoed."""
    if isinstance(exc, SluiceError):
        return int(exc.status), orjson.dumps({"error": exc.message})
    log.error("unexpected error while answering a request", exc_info=exc)
    return int(HTTPStatus.INTERNAL_SERVER_ERROR), INTERNAL
