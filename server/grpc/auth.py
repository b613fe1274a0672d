"""The gRPC edge's access check, on a call's headers (metadata) before its message is read:
a refusal is UNAUTHENTICATED or PERMISSION_DENIED. The native edge runs it in its
connection; grpc.aio through a server interceptor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from server.errors import SluiceError
from server.security.access import Guard, grpc_endpoint

from .call import CallError
from .connection import Authorize
from .errors import status_of


def native_authorize(guard: Guard) -> Authorize:
    """The native connection's hook: the actor, or ``CallError`` with the refusal."""

    def authorize(path: str, headers: Mapping[str, str]) -> str:
        try:
            return guard.check(grpc_endpoint(path), headers.get("authorization"))
        except SluiceError as exc:
            code, message = status_of(exc)
            raise CallError(code.value[0], message) from None

    return authorize


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """grpc.aio: a refused call gets a handler that aborts without parsing its message."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())
        try:
            self.guard.check(grpc_endpoint(method), metadata.get("authorization"))
        except SluiceError as exc:
            return _refusal(method, *status_of(exc))
        return await continuation(handler_call_details)


def _refusal(method: str, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    if method.endswith("/ModelStreamInfer"):
        return grpc.stream_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)
