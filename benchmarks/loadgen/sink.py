"""The load generator's ceiling: a server that answers every request with canned bytes.

It counts request heads (``\\r\\n\\r\\n``) and writes one fixed 200 response per head, so it
does almost no work per request; wrk's rate against it is the most wrk can drive on this
machine. Only for bodies that never contain ``\\r\\n\\r\\n`` (JSON). Runs with uvloop when
present.

    python -m benchmarks.loadgen.sink PORT
"""

from __future__ import annotations

import asyncio
import sys

BODY = b'{"outputs":[]}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
MARK = b"\r\n\r\n"


class Sink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        chunk = self.tail + data
        count = chunk.count(MARK)
        self.tail = chunk[-3:]
        if count:
            self.transport.write(RESPONSE * count)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
