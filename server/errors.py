"""Domain errors. Stdlib only; each carries the HTTP status every edge maps from."""

from __future__ import annotations

from http import HTTPStatus


class SluiceError(Exception):
    """Base of every error Sluice reports to a client."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(SluiceError):
    """The request is malformed or does not match the model."""

    status = HTTPStatus.BAD_REQUEST


class ModelNotFound(SluiceError):
    """No model (or version) by that name."""

    status = HTTPStatus.NOT_FOUND


class ModelNotReady(SluiceError):
    """The model exists but cannot serve right now (loading, unloading, failed)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class Overloaded(SluiceError):
    """The model's queue is full; the client should back off and retry."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class DeadlineExceeded(SluiceError):
    """The request's timeout expired before it ran."""

    status = HTTPStatus.GATEWAY_TIMEOUT


class PayloadTooLarge(SluiceError):
    """The request body is over the configured limit."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unauthorized(SluiceError):
    """A token is required and was missing or wrong."""

    status = HTTPStatus.UNAUTHORIZED


class Conflict(SluiceError):
    """The change conflicts with the registry's state (a deployed version cannot be deleted)."""

    status = HTTPStatus.CONFLICT


class RegistryUnavailable(SluiceError):
    """The registry's database could not be reached or did not answer in time."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class ConfigError(SluiceError):
    """A configuration value is invalid. Raised at start-up, before anything serves."""

    status = HTTPStatus.BAD_REQUEST


class ModelFailed(SluiceError):
    """The model failed while running a batch; the message carries the runtime's reason."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR


class Cancelled(SluiceError):
    """The client went away before the request ran."""

    status = HTTPStatus.BAD_REQUEST


class Forbidden(SluiceError):
    """The token is valid but lacks the scope, or the endpoint is switched off."""

    status = HTTPStatus.FORBIDDEN
