"""A webhook receiver on loopback (stdlib ``http.server`` in a thread) that checks every
request's Standard Webhooks signature and answers from a script."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from server.events import signing


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Received:
    id: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str


class Receiver:
    """Answers the scripted ``answers`` in turn, then 200. A request whose signature does not
    verify is answered 401. While ``hold`` is set, requests wait (after being recorded)."""

    def __init__(self, secret: str, answers: list[Answer] | None = None) -> None:
        self.secret = secret
        self.answers = list(answers or [])
        self.received: list[Received] = []
        self.hold = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        self._release.set()

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver got {len(self.received)} of {count} requests")
            time.sleep(0.02)
        return list(self.received)

    def _handle(self, request: BaseHTTPRequestHandler) -> Answer:
        length = int(request.headers.get("content-length", "0"))
        body = request.rfile.read(length)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            signing.verify(self.secret, headers, body)
            verified, error = True, ""
        except signing.InvalidSignature as exc:
            verified, error = False, str(exc)
        with self._lock:
            self.received.append(
                Received(headers.get("webhook-id", ""), headers, body, verified, error)
            )
            answer = self.answers.pop(0) if self.answers else Answer(200)
        if self.hold.is_set():
            self._release.wait(60)
        return answer if verified else Answer(401, body=error.encode())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                answer = receiver._handle(self)
                try:
                    self.send_response(answer.status)
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    self.send_header("content-length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the deliverer was killed while we held its request

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
