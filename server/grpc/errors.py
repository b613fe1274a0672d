"""The gRPC edge's one error table: a ``SluiceError``'s HTTPStatus → ``grpc.StatusCode``."""

from __future__ import annotations

import logging
from http import HTTPStatus

import grpc

from server.errors import SluiceError

log = logging.getLogger(__name__)

STATUS_CODES: dict[HTTPStatus, grpc.StatusCode] = {
    HTTPStatus.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    HTTPStatus.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    HTTPStatus.GATEWAY_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
}
INTERNAL_MESSAGE = "internal error"


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client sees for ``exc``.

    A ``SluiceError`` maps through the table (INTERNAL when its status is not in it) and keeps
    its message; anything else is a bug: logged here, once, with its traceback, and answered
    with a generic INTERNAL so no internals reach the client.
    """
    if isinstance(exc, SluiceError):
        return STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message
    log.error("unexpected error in a gRPC handler", exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
