"""Closed-loop HTTP clients for benchmarks that watch a server change under load (a swap, a
rollback): one thread and one keep-alive connection each, sending as soon as an answer is in.
A subclass says what to send (``body``) and what to keep of each answer (``record``)."""

from __future__ import annotations

import http.client
import threading
import time


class ClosedLoop:
    def __init__(self, port: int, clients: int, headers: dict[str, str], path: str) -> None:
        self.port = port
        self.headers = headers
        self.path = path
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def __enter__(self) -> ClosedLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def body(self, i: int) -> bytes:
        raise NotImplementedError

    def record(
        self, response: http.client.HTTPResponse, body: bytes, started: float, ended: float
    ) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        i = 0
        while not self._stop.is_set():
            i += 1
            started = time.perf_counter()
            conn.request("POST", self.path, self.body(i), self.headers)
            response = conn.getresponse()
            body = response.read()
            self.record(response, body, started, time.perf_counter())
