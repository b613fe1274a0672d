"""The HTTP/2 layer under the gRPC edge, driven frame by frame with the ``h2`` client.

These cover what tritonclient never does: tiny flow-control windows, padding, CONTINUATION,
resets, pings, non-gRPC requests and malformed input. They run against the native edge only:
grpc.aio's HTTP/2 is gRPC's own.
"""

from __future__ import annotations

import gzip
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import numpy as np
import pytest
import tritonclient.grpc as triton

from server.grpc.generated import inference_pb2 as pb
from server.grpc.limits import Limits
from server.grpc.native import NativeEdge
from server.grpc.servicer import InferenceServicer
from server.sockets import bind

from .conftest import Live

PATH = "/inference.GRPCInferenceService/ModelInfer"
STREAM_PATH = "/inference.GRPCInferenceService/ModelStreamInfer"


def infer_message(model: str, values: np.ndarray, request_id: str = "") -> bytes:
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    tensor = request.inputs.add(name="INPUT0", datatype="FP32", shape=list(values.shape))
    assert tensor is not None
    request.raw_input_contents.append(values.astype(np.float32).tobytes())
    return request.SerializeToString()


def framed(message: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">BI", int(compressed), len(message)) + message


@dataclass
class Answer:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    reset: int | None = None

    @property
    def fields(self) -> dict[str, str]:
        """The trailers, or the headers of a trailers-only answer."""
        return self.trailers or self.headers

    @property
    def status(self) -> int:
        return int(self.fields["grpc-status"])

    def response(self) -> pb.ModelInferResponse:
        assert self.data[0] == 0 and struct.unpack(">I", self.data[1:5])[0] == len(self.data) - 5
        return pb.ModelInferResponse.FromString(self.data[5:])


class Raw:
    """A blocking HTTP/2 client over a real socket."""

    def __init__(self, port: int, settings: dict[int, int] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.answers: dict[int, Answer] = {}
        self.events: list[h2.events.Event] = []
        self.window_updates = True

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def start(self, path: str = PATH, extra: list[tuple[str, str]] | None = None) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *(extra or []),
        ]
        self.conn.send_headers(stream_id, headers)
        self.answers[stream_id] = Answer()
        self.flush()
        return stream_id

    def call(
        self, body: bytes, path: str = PATH, extra: list[tuple[str, str]] | None = None
    ) -> int:
        stream_id = self.start(path, extra)
        self.conn.send_data(stream_id, body, end_stream=True)
        self.flush()
        return stream_id

    def pump(self) -> bool:
        """Read once and record the events; False once the server closed the connection."""
        data = self.sock.recv(1 << 16)
        if not data:
            return False
        for event in self.conn.receive_data(data):
            self.events.append(event)
            answer = self.answers.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, h2.events.ResponseReceived) and answer is not None:
                answer.headers = dict(event.headers)
            elif isinstance(event, h2.events.TrailersReceived) and answer is not None:
                answer.trailers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived) and answer is not None:
                answer.data += event.data
                if self.window_updates:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            elif isinstance(event, h2.events.StreamReset) and answer is not None:
                answer.reset = event.error_code
        self.flush()
        return True

    def answer(self, stream_id: int) -> Answer:
        while True:
            ended = any(
                isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
                and e.stream_id == stream_id
                for e in self.events
            )
            if ended:
                return self.answers[stream_id]
            if not self.pump():
                raise ConnectionError("the server closed the connection")

    def close(self) -> None:
        self.sock.close()


pytestmark = pytest.mark.parametrize("live", ["native"], indirect=True)


@pytest.fixture
def native(live: Live) -> Live:
    return live


@pytest.fixture
def raw(native: Live) -> Iterator[Raw]:
    client = Raw(native.edge.port)
    yield client
    client.close()


def test_a_call_over_raw_http2(raw: Raw) -> None:
    values = np.arange(3, dtype=np.float32).reshape(1, 3)
    answer = raw.answer(raw.call(framed(infer_message("identity_fp32", values, "r1"))))
    assert answer.headers[":status"] == "200"
    assert answer.headers["content-type"].startswith("application/grpc")
    assert answer.status == 0
    response = answer.response()
    assert response.id == "r1"
    np.testing.assert_array_equal(
        np.frombuffer(response.raw_output_contents[0], np.float32), values.ravel()
    )


def test_ping_is_acknowledged(raw: Raw) -> None:
    raw.conn.ping(b"sluice!!")
    raw.flush()
    while not any(isinstance(e, h2.events.PingAckReceived) for e in raw.events):
        assert raw.pump()
    ack = next(e for e in raw.events if isinstance(e, h2.events.PingAckReceived))
    assert ack.ping_data == b"sluice!!"


def test_answer_larger_than_the_clients_window_waits_for_credit(native: Live) -> None:
    client = Raw(native.edge.port, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    values = np.random.default_rng(0).random((60, 3), dtype=np.float32)
    try:
        stream_id = client.call(framed(infer_message("identity_fp32", values)))
        answer = client.answer(stream_id)
    finally:
        client.close()
    sizes = [len(e.data) for e in client.events if isinstance(e, h2.events.DataReceived)]
    assert answer.status == 0 and max(sizes) <= 100 and len(sizes) >= 8
    got = np.frombuffer(answer.response().raw_output_contents[0], np.float32)
    np.testing.assert_array_equal(got, values.ravel())


def test_request_in_tiny_padded_frames(raw: Raw) -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    body = framed(infer_message("identity_fp32", values))
    stream_id = raw.start()
    for i in range(0, len(body), 7):
        raw.conn.send_data(stream_id, body[i : i + 7], pad_length=5)
    raw.conn.end_stream(stream_id)
    raw.flush()
    answer = raw.answer(stream_id)
    assert answer.status == 0
    np.testing.assert_array_equal(
        np.frombuffer(answer.response().raw_output_contents[0], np.float32), values.ravel()
    )


def test_headers_continued_over_several_frames(raw: Raw) -> None:
    values = np.ones((1, 3), dtype=np.float32)
    # 40 KB of metadata cannot fit one 16 KB frame: h2 sends HEADERS + CONTINUATION frames.
    pad = [(f"x-pad-{i}", "a" * 10_000) for i in range(4)]
    answer = raw.answer(raw.call(framed(infer_message("identity_fp32", values)), extra=pad))
    assert answer.status == 0


def test_gzip_compressed_request(raw: Raw) -> None:
    values = np.full((1, 3), 7, dtype=np.float32)
    body = framed(gzip.compress(infer_message("identity_fp32", values)), compressed=True)
    answer = raw.answer(raw.call(body, extra=[("grpc-encoding", "gzip")]))
    assert answer.status == 0
    np.testing.assert_array_equal(
        np.frombuffer(answer.response().raw_output_contents[0], np.float32), values.ravel()
    )


def test_compressed_flag_without_an_encoding_is_an_error(raw: Raw) -> None:
    body = framed(gzip.compress(infer_message("identity_fp32", np.ones((1, 3)))), compressed=True)
    answer = raw.answer(raw.call(body))
    assert answer.status == 13  # INTERNAL, as the gRPC spec asks


def test_unknown_method_is_unimplemented(raw: Raw) -> None:
    answer = raw.answer(raw.call(framed(b""), path="/inference.GRPCInferenceService/Nope"))
    assert answer.status == 12


def test_unparsable_request_message(raw: Raw) -> None:
    answer = raw.answer(raw.call(framed(b"\xff\xff\xff\xff")))
    assert answer.status == 3 and "cannot parse" in answer.fields["grpc-message"]


def test_two_messages_on_a_unary_call(raw: Raw) -> None:
    message = framed(infer_message("identity_fp32", np.ones((1, 3))))
    answer = raw.answer(raw.call(message + message))
    assert answer.status == 12


def test_a_second_message_on_a_unary_call_is_refused_before_the_stream_ends(raw: Raw) -> None:
    message = framed(infer_message("identity_fp32", np.ones((1, 3))))
    stream_id = raw.start()
    raw.conn.send_data(stream_id, message + message)  # no END_STREAM: the client goes on
    raw.flush()
    answer = raw.answer(stream_id)
    assert answer.status == 12 and "one request message" in answer.fields["grpc-message"]


def test_unparsable_message_on_a_stream_ends_it(raw: Raw) -> None:
    good = framed(infer_message("identity_fp32", np.ones((1, 3)), "first"))
    stream_id = raw.call(good + framed(b"\xff\xff\xff\xff"), path=STREAM_PATH)
    answer = raw.answer(stream_id)
    assert answer.status == 3 and "cannot parse" in answer.fields["grpc-message"]


def test_stream_ending_inside_a_message(raw: Raw) -> None:
    message = framed(infer_message("identity_fp32", np.ones((1, 3))))
    answer = raw.answer(raw.call(message[:-2]))
    assert answer.status == 13 and "inside a message" in answer.fields["grpc-message"]


def test_malformed_timeout_is_invalid(raw: Raw) -> None:
    message = framed(infer_message("identity_fp32", np.ones((1, 3))))
    answer = raw.answer(raw.call(message, extra=[("grpc-timeout", "soon")]))
    assert answer.status == 3 and "grpc-timeout" in answer.fields["grpc-message"]


def test_error_message_is_percent_encoded(raw: Raw) -> None:
    answer = raw.answer(raw.call(framed(infer_message("no_such_mödel", np.ones((1, 3))))))
    assert answer.status == 5
    message = answer.fields["grpc-message"]
    assert message.isascii() and "%C3%B6" in message


def test_non_grpc_content_type_is_refused(raw: Raw) -> None:
    stream_id = raw.conn.get_next_available_stream_id()
    raw.answers[stream_id] = Answer()
    headers = [(":method", "POST"), (":scheme", "http"), (":path", PATH), (":authority", "x")]
    raw.conn.send_headers(stream_id, [*headers, ("content-type", "text/plain")], end_stream=True)
    raw.flush()
    answer = raw.answer(stream_id)
    assert answer.headers[":status"] == "415"


def test_reset_stream_drops_the_queued_request(native: Live, raw: Raw) -> None:
    before = native.engine.statistics("slow", "")[0]["inference_count"]
    stream_id = raw.call(framed(infer_message("slow", np.ones((1, 3)))))
    time.sleep(0.1)  # the request waits out the slow model's queue delay
    raw.conn.reset_stream(stream_id)
    raw.flush()
    time.sleep(0.8)
    # The connection still works, and the reset request never ran.
    answer = raw.answer(raw.call(framed(infer_message("identity_fp32", np.ones((1, 3))))))
    assert answer.status == 0
    assert native.engine.statistics("slow", "")[0]["inference_count"] == before


def test_not_http2_is_closed(native: Live) -> None:
    with socket.create_connection(("127.0.0.1", native.edge.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert b"HTTP/1.1 200" not in received


def small_edge(live: Live, **limits: int) -> NativeEdge:
    async def build() -> NativeEdge:
        edge = NativeEdge(
            InferenceServicer(live.engine),
            bind("127.0.0.1", 0, reuse_port=False),
            Limits(max_message_bytes=1 << 20, **limits),
            "127.0.0.1",
        )
        await edge.start()
        return edge

    return live.run(build())


def test_request_larger_than_the_servers_window_is_credited(native: Live) -> None:
    edge = small_edge(native, stream_window=16_384, connection_window=65_535)
    values = np.array([[bytes([i]) * 160_000 for i in range(3)]], dtype=np.object_)  # 480 KB
    try:
        with triton.InferenceServerClient(f"127.0.0.1:{edge.port}") as client:
            inputs = [triton.InferInput("INPUT0", [1, 3], "BYTES").set_data_from_numpy(values)]
            result = client.infer("identity_bytes", inputs)
        assert result.as_numpy("OUTPUT0").tolist() == values.tolist()
    finally:
        native.run(edge.stop(1))


def test_streams_over_the_limit_are_refused(native: Live) -> None:
    edge = small_edge(native, max_concurrent_streams=1)
    client = Raw(edge.port)
    try:
        slow = client.call(framed(infer_message("slow", np.ones((1, 3)))))
        extra = client.call(framed(infer_message("identity_fp32", np.ones((1, 3)))))
        assert client.answer(extra).reset == 7  # REFUSED_STREAM
        assert client.answer(slow).status == 0
    finally:
        client.close()
        native.run(edge.stop(1))
