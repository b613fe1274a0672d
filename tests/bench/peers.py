"""Small V2 servers that are not Sluice: a stdlib HTTP/1.1 one and a grpcio one.

Each answers metadata and infer for one model (``echo``: INPUT0 [-1, 3] FP32 -> OUTPUT0 of
the same shape), records the ``authorization`` it was sent, and may serve TLS.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc

from server.grpc.generated import inference_pb2 as pb

METADATA = {
    "name": "echo",
    "versions": ["1"],
    "platform": "test",
    "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 3]}],
    "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 3]}],
}


@dataclass
class Seen:
    tokens: set[str] = field(default_factory=set)
    requests: int = 0


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def self_signed(directory: Path) -> Certificate:
    """A certificate for localhost and 127.0.0.1, made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


@contextmanager
def http_peer(
    certificate: Certificate | None = None, delay_s: float = 0.0
) -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/v2/models/echo":
                self._answer(200, METADATA)
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.tokens.add(self.headers.get("Authorization", ""))
            seen.requests += 1
            time.sleep(delay_s)
            tensor = body["inputs"][0]
            out = {"name": "OUTPUT0", "datatype": "FP32", "shape": tensor["shape"],
                   "data": tensor["data"]}  # fmt: skip
            self._answer(200, {"model_name": "echo", "outputs": [out]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if certificate is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate.cert, certificate.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"localhost:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def grpc_peer(certificate: Certificate | None = None) -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    def metadata(request: pb.ModelMetadataRequest, context: grpc.ServicerContext) -> object:
        if request.name != "echo":
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model '{request.name}'")
        reply = pb.ModelMetadataResponse(name="echo", versions=["1"], platform="test")
        for kind in ("inputs", "outputs"):
            t = METADATA[kind][0]  # type: ignore[index]
            getattr(reply, kind).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return reply

    def infer(request: pb.ModelInferRequest, context: grpc.ServicerContext) -> object:
        seen.tokens.update(v for k, v in context.invocation_metadata() if k == "authorization")
        seen.requests += 1
        reply = pb.ModelInferResponse(model_name="echo")
        reply.outputs.add(name="OUTPUT0", datatype="FP32", shape=request.inputs[0].shape)
        reply.raw_output_contents.extend(request.raw_input_contents)
        return reply

    def handler(fn: object, request: type) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=request.FromString,  # type: ignore[attr-defined]
            response_serializer=lambda m: m.SerializeToString(),
        )  # fmt: skip

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
            "ModelMetadata": handler(metadata, pb.ModelMetadataRequest),
            "ModelInfer": handler(infer, pb.ModelInferRequest),
        })]
    )  # fmt: skip
    if certificate is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        credentials = grpc.ssl_server_credentials(
            [(certificate.key.read_bytes(), certificate.cert.read_bytes())]
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"localhost:{port}", seen
    finally:
        server.stop(0)
