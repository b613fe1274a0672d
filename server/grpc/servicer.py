"""The ``inference.GRPCInferenceService`` servicer: decode → engine → encode, per RPC.

Runs on the serving event loop, the same loop as the engine's batchers, under either transport
(``native.py`` or grpc.aio). A unary RPC the client cancels, or whose deadline passes, has its
handler cancelled by the transport; that cancels the engine's future, and the batcher drops
the request before it runs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from google.protobuf import json_format

from server.engine.engine import Engine
from server.errors import InvalidInput
from server.security.access import Guard

from .codec import decode_request, encode_response, stream_answer
from .errors import status_of
from .generated import inference_pb2 as pb
from .generated import inference_pb2_grpc as pb_grpc

# Requests of one stream in flight or answered but not yet sent. Past it the servicer stops
# reading, so HTTP/2 flow control pushes back on the client instead of memory growing.
STREAM_WINDOW = 128

Request = TypeVar("Request")
Response = TypeVar("Response")
Method = Callable[["InferenceServicer", Request, Any], Awaitable[Response]]


def answered(method: Method[Request, Response]) -> Method[Request, Response]:
    """Answer a ``SluiceError`` with its status code through the edge's table."""

    @functools.wraps(method)
    async def handler(self: InferenceServicer, request: Request, context: Any) -> Response:
        try:
            return await method(self, request, context)
        except Exception as exc:
            code, message = status_of(exc)
            await context.abort(code, message)
            raise  # abort raises; this line is never reached

    return handler


def _reject_parameters(params: Mapping[str, object], allowed: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidInput(f"unsupported parameter(s): {', '.join(unknown)}")


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """One instance per server, sharing the engine with the HTTP edge."""

    def __init__(self, engine: Engine, guard: Guard | None = None) -> None:
        self._engine = engine
        self._guard = guard

    def _actor(self, context: Any) -> str:
        """The caller's token name: the native edge's call carries it; under grpc.aio it is
        found again from the metadata (the interceptor has already checked it)."""
        actor = getattr(context, "actor", None)
        if isinstance(actor, str):
            return actor
        if self._guard is None:
            return ""
        metadata = dict(context.invocation_metadata() or ())
        return self._guard.identify(metadata.get("authorization"))

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Any
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._engine.live)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Any
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._engine.ready)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._engine.model_ready(request.name, request.version))

    @answered
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        response = pb.ServerMetadataResponse()
        json_format.ParseDict(dict(self._engine.server_metadata()), response)
        return response

    @answered
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        response = pb.ModelMetadataResponse()
        metadata = self._engine.model_metadata(request.name, request.version)
        json_format.ParseDict(dict(metadata), response)
        return response

    @answered
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        infer = decode_request(request, context.time_remaining())
        infer.actor = self._actor(context)
        infer.routing_key = self._routing_key(infer.model, context)
        response = await self._engine.infer(infer)
        return encode_response(response)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests run concurrently (so they batch together); each answer carries its
        request's id, and a failed request is answered with its error while the stream goes on."""
        window = asyncio.Semaphore(STREAM_WINDOW)
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read_stream(requests, context, window, answers))
        try:
            while (answer := await answers.get()) is not None:
                yield answer
                window.release()
            await reader  # re-raises what ended the reading, if anything did
        finally:
            reader.cancel()

    async def _read_stream(
        self,
        requests: AsyncIterator[pb.ModelInferRequest],
        context: Any,
        window: asyncio.Semaphore,
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None],
    ) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                async for request in requests:
                    await window.acquire()
                    group.create_task(self._stream_one(request, context, answers))
        finally:
            answers.put_nowait(None)

    async def _stream_one(
        self,
        request: pb.ModelInferRequest,
        context: Any,
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None],
    ) -> None:
        try:
            infer = decode_request(request, context.time_remaining())
            infer.actor = self._actor(context)
            infer.routing_key = self._routing_key(infer.model, context)
            response = await self._engine.infer(infer)
        except Exception as exc:
            answers.put_nowait(stream_answer(request, None, status_of(exc)[1]))
        else:
            answers.put_nowait(stream_answer(request, response))

    def _routing_key(self, model: str, context: Any) -> str:
        """The value of the model's sticky rollout header, when it has one."""
        header = self._engine.sticky_header(model)
        if header:
            for key, value in context.invocation_metadata() or ():
                if key == header:
                    return str(value)
        return ""

    @answered
    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Any
    ) -> pb.ModelConfigResponse:
        config = self._engine.model_config(request.name, request.version)
        response = pb.ModelConfigResponse()
        json_format.ParseDict(config, response.config, ignore_unknown_fields=True)
        return response

    @answered
    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Any
    ) -> pb.ModelStatisticsResponse:
        stats = self._engine.statistics(request.name, request.version)
        response = pb.ModelStatisticsResponse()
        json_format.ParseDict({"model_stats": stats}, response)
        return response

    @answered
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        Entry = pb.RepositoryIndexResponse.ModelIndex
        models = [
            Entry(name=e.name, version=e.version, state=e.state, reason=e.reason)
            for e in self._engine.index(ready_only=request.ready)
        ]
        return pb.RepositoryIndexResponse(models=models)

    @answered
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        _reject_parameters(request.parameters)
        await self._engine.load(request.model_name, actor=self._actor(context))
        return pb.RepositoryModelLoadResponse()

    @answered
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        # Sluice has no ensembles, so there are never dependents to unload.
        _reject_parameters(request.parameters, allowed=("unload_dependents",))
        await self._engine.unload(request.model_name, actor=self._actor(context))
        return pb.RepositoryModelUnloadResponse()
