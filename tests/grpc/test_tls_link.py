"""The native edge's own TLS layer (``server/grpc/tls_link.py``) from real clients and raw
sockets: big messages cross many records both ways, a handshake that never comes or is garbage
is cut without a connection ever opening, and a client that vanishes mid-call is forgotten."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
import trustme

from server.grpc.limits import Limits
from server.grpc.native import NativeEdge
from server.grpc.servicer import InferenceServicer
from server.security.tls import server_context
from server.sockets import bind

from .conftest import Live
from .test_floods import PREFACE, SETTINGS, frame

pytestmark = pytest.mark.parametrize("live", ["native"], indirect=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path, Path, Path]:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    issued.private_key_pem.write_to_path(str(root / "key.pem"))
    issued.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    return ca, root / "cert.pem", root / "key.pem", root / "ca.pem"


@pytest.fixture
def edge(live: Live, pki: tuple[trustme.CA, Path, Path, Path]) -> Iterator[NativeEdge]:
    _, cert, key, _ = pki

    async def build() -> NativeEdge:
        tls = server_context(str(cert), str(key), alpn=("h2",))
        limits = Limits(max_message_bytes=8 << 20, handshake_timeout_s=0.3)
        built = NativeEdge(
            InferenceServicer(live.engine), bind("127.0.0.1", 0, False), limits, "tls", None, tls
        )
        await built.start()
        return built

    built = live.run(build())
    yield built
    live.run(built.stop(1))


def client(edge: NativeEdge, ca: Path) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(
        f"localhost:{edge.port}", ssl=True, root_certificates=str(ca)
    )


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    started = time.monotonic()
    try:
        while sock.recv(1 << 16):
            if time.monotonic() - started > seconds:
                return False
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_messages_of_many_records_cross_both_ways(edge: NativeEdge, pki: tuple) -> None:
    values = np.array([[bytes([i]) * 1_200_000 for i in range(3)]], dtype=np.object_)  # 3.6 MB
    with client(edge, pki[3]) as c:
        for _ in range(3):
            inputs = [triton.InferInput("INPUT0", [1, 3], "BYTES").set_data_from_numpy(values)]
            result = c.infer("identity_bytes", inputs)
            assert result.as_numpy("OUTPUT0").tolist() == values.tolist()
        small = np.ones((1, 3), np.float32)
        inputs = [triton.InferInput("INPUT0", [1, 3], "FP32").set_data_from_numpy(small)]
        np.testing.assert_array_equal(c.infer("identity_fp32", inputs).as_numpy("OUTPUT0"), small)


def test_a_handshake_that_never_comes_is_cut(edge: NativeEdge, pki: tuple) -> None:
    with socket.create_connection(("127.0.0.1", edge.port)) as silent:
        assert closed_within(silent, 5.0)
    assert not edge._connections  # no HTTP/2 connection was ever opened for it
    with client(edge, pki[3]) as c:
        assert c.is_server_live()


@pytest.mark.parametrize(
    "garbage",
    [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # cleartext HTTP/2 on the TLS port
        b"\x16\x03\x01\xff\xff" + b"\x00" * 64,  # a record header claiming 64 KiB, then junk
        bytes(range(256)) * 8,
    ],
)
def test_garbage_instead_of_a_client_hello_is_cut(
    edge: NativeEdge, pki: tuple, garbage: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", edge.port)) as sock:
        sock.sendall(garbage)
        assert closed_within(sock, 5.0)
    assert not edge._connections
    with client(edge, pki[3]) as c:
        assert c.is_server_live()


def test_a_client_gone_mid_call_is_forgotten(edge: NativeEdge, live: Live, pki: tuple) -> None:
    context = ssl.create_default_context(cafile=str(pki[3]))
    context.set_alpn_protocols(["h2"])
    for ending in ("close_notify", "reset"):
        raw = socket.create_connection(("127.0.0.1", edge.port))
        tls = context.wrap_socket(raw, server_hostname="localhost")
        assert tls.selected_alpn_protocol() == "h2"
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        assert tls.recv(1 << 16)  # the server's SETTINGS: an HTTP/2 connection is open
        assert len(edge._connections) == 1
        if ending == "close_notify":
            # The server's answers may still be in flight: the client's unwrap can see data
            # after its own close_notify, which is the client's concern, not the server's.
            with contextlib.suppress(ssl.SSLError, OSError):
                tls.unwrap()
        else:  # an abortive close: RST, no close_notify
            tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        tls.close()  # wrap_socket took the descriptor over from ``raw``
        deadline = time.monotonic() + 5
        while edge._connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not edge._connections, ending


def test_a_client_that_never_reads_cannot_grow_the_server(edge: NativeEdge, pki: tuple) -> None:
    """PINGs over TLS from a client that reads nothing: the server stops taking its input
    (or closes) and this process (the server's) grows by a few MB at most, as over cleartext
    (test_floods); unbounded, the same flood grew a server by 225 MB."""
    context = ssl.create_default_context(cafile=str(pki[3]))
    context.set_alpn_protocols(["h2"])
    tls = context.wrap_socket(
        socket.create_connection(("127.0.0.1", edge.port)), server_hostname="localhost"
    )
    tls.settimeout(1.0)
    pings = frame(6, 0, 0, b"12345678") * 4096
    before = rss_mb()
    peak, outcome, end = before, "", time.monotonic() + 20
    tls.sendall(PREFACE + SETTINGS)
    try:
        while time.monotonic() < end:
            tls.sendall(pings)
            peak = max(peak, rss_mb())
    except TimeoutError:
        outcome = "stopped reading"
    except OSError:
        outcome = "closed"
    finally:
        tls.close()
    assert outcome, "the server read PINGs for 20 s from a client that never read a reply"
    assert peak - before < 48


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")
