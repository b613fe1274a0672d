"""The Starlette application: every Open Inference Protocol route plus Triton's extensions
(binary tensors, model repository, configuration, statistics) and ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.engine.engine import Engine
from server.errors import InvalidInput, ModelNotFound, SluiceError
from server.security.access import Guard

from .auth import ACTOR, admitted
from .errors import INTERNAL, error_body
from .infer import InferHandler, Receive, Scope, Send, parse_infer_path


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def _sluice_error(request: Request, exc: Exception) -> Response:
    status, body = error_body(exc)
    return Response(body, status, media_type="application/json")


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after answering, so uvicorn logs the traceback once.
    return Response(INTERNAL, 500, media_type="application/json")


DriftReports = Callable[[str, str], Mapping[str, Any] | None]


def build_app(
    engine: Engine,
    max_request_bytes: int = 64 * 1024 * 1024,
    guard: Guard | None = None,
    drift_report: DriftReports | None = None,
) -> SluiceApp:
    """The ASGI application for ``engine``. Handlers raise ``SluiceError``; one exception
    handler turns it into ``{"error": ...}`` with its status. ``guard`` checks every
    request's token and scope on its headers (None: no check). ``drift_report(model,
    version)`` answers ``GET /v2/models/{m}/drift`` (the latest online drift evaluation)."""

    def model_args(request: Request) -> tuple[str, str]:
        params = request.path_params
        return params["model"], params.get("version", "")

    async def live(request: Request) -> Response:
        return JSONResponse({"live": engine.live}, 200 if engine.live else 503)

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": engine.ready}, 200 if engine.ready else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(engine.server_metadata())

    async def model_metadata(request: Request) -> Response:
        return JSONResponse(engine.model_metadata(*model_args(request)))

    async def model_ready(request: Request) -> Response:
        name, version = model_args(request)
        try:
            engine.get(name, version)
        except ModelNotFound:
            raise
        except SluiceError:  # known but loading, unloaded or failed
            return JSONResponse({"name": name, "ready": False}, 503)
        return JSONResponse({"name": name, "ready": True})

    async def model_config(request: Request) -> Response:
        return JSONResponse(engine.model_config(*model_args(request)))

    async def model_stats(request: Request) -> Response:
        name, version = model_args(request) if "model" in request.path_params else ("", "")
        return JSONResponse({"model_stats": engine.statistics(name, version)})

    async def repository_index(request: Request) -> Response:
        body = await _json_body(request)
        entries = engine.index(bool(body.get("ready", False)))
        return JSONResponse(
            [
                {"name": e.name, "version": e.version, "state": e.state, "reason": e.reason}
                for e in entries
            ]
        )

    async def repository_load(request: Request) -> Response:
        await _json_body(request)
        await engine.load(request.path_params["model"], actor=request.scope.get(ACTOR, ""))
        return JSONResponse({})

    async def repository_unload(request: Request) -> Response:
        await _json_body(request)
        await engine.unload(request.path_params["model"], actor=request.scope.get(ACTOR, ""))
        return JSONResponse({})

    async def model_drift(request: Request) -> Response:
        name, version = model_args(request)
        engine.get(name, version)
        report = drift_report(name, version) if drift_report is not None else None
        if report is None:
            raise ModelNotFound(f"model '{name}' has no online drift evaluation (yet)")
        return JSONResponse(report)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    model = "/v2/models/{model:str}"
    versioned = model + "/versions/{version:str}"
    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/v2/models/stats", model_stats),
        Route(model, model_metadata),
        Route(versioned, model_metadata),
        Route(model + "/ready", model_ready),
        Route(versioned + "/ready", model_ready),
        Route(model + "/config", model_config),
        Route(versioned + "/config", model_config),
        Route(model + "/stats", model_stats),
        Route(versioned + "/stats", model_stats),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/v2/repository/models/{model:str}/load", repository_load, methods=["POST"]),
        Route("/v2/repository/models/{model:str}/unload", repository_unload, methods=["POST"]),
        Route("/metrics", metrics),
        Route(model + "/drift", model_drift),
        Route(versioned + "/drift", model_drift),
    ]
    handlers = {SluiceError: _sluice_error, Exception: _unexpected}
    router = Starlette(routes=routes, exception_handlers=handlers)
    return SluiceApp(router, InferHandler(engine, max_request_bytes), guard)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object")
    return doc


class SluiceApp:
    """Routes POST …/infer straight to the inference handler, everything else to Starlette."""

    def __init__(self, router: Starlette, infer: InferHandler, guard: Guard | None = None) -> None:
        self.router = router
        self.infer = infer
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self.guard
        if guard is not None and scope["type"] == "http" and not await admitted(guard, scope, send):
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            target = parse_infer_path(scope["path"])
            if target is not None:
                await self.infer(scope, receive, send, *target)
                return
        await self.router(scope, receive, send)
