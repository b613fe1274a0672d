"""The plain peer: Starlette + ONNX Runtime, KServe V2 JSON, no batching.

Each request runs the session on its own rows. Session options match the MLServer peer:
1 intra-op thread, 1 inter-op thread, spinning off. Run it under uvicorn with N workers:

    SLUICE_PLAIN_MODEL=model.onnx uvicorn benchmarks.peers.plain_server:app \
        --host 127.0.0.1 --port 8100 --workers 2 --no-access-log --log-level warning

Only what the benchmark needs: live/ready, model metadata, and FP32 JSON infer.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MODEL_NAME = os.environ.get("SLUICE_PLAIN_NAME", "mlp")


def _session(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


SESSION = _session(os.environ["SLUICE_PLAIN_MODEL"])
INPUT = SESSION.get_inputs()[0]
OUTPUT = SESSION.get_outputs()[0]
WIDTH = int(INPUT.shape[1])


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


async def ready(request: Request) -> Response:
    return _json({"ready": True})


async def metadata(request: Request) -> Response:
    return _json(
        {
            "name": MODEL_NAME,
            "platform": "onnxruntime",
            "inputs": [{"name": INPUT.name, "datatype": "FP32", "shape": [-1, WIDTH]}],
            "outputs": [{"name": OUTPUT.name, "datatype": "FP32", "shape": [-1, 8]}],
        }
    )


async def infer(request: Request) -> Response:
    if request.path_params["model"] != MODEL_NAME:
        return _json({"error": "unknown model"}, 404)
    try:
        body = orjson.loads(await request.body())
        tensor = body["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        return _json({"error": f"bad request: {exc}"}, 400)
    (y,) = SESSION.run([OUTPUT.name], {INPUT.name: x})
    return _json(
        {
            "model_name": MODEL_NAME,
            "id": body.get("id", ""),
            "outputs": [
                {
                    "name": OUTPUT.name,
                    "datatype": "FP32",
                    "shape": list(y.shape),
                    "data": y.ravel().tolist(),
                }
            ],
        }
    )


app = Starlette(
    routes=[
        Route("/v2/health/live", ready),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{model}", metadata),
        Route("/v2/models/{model}/ready", ready),
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
    ]
)
