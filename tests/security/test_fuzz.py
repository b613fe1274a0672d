"""Property tests (hypothesis): whatever arrives, the JSON codec with its binary extension,
the protobuf request decoder, HPACK and the HTTP/2 connection give a clean error or a valid
answer: no other exception, no hang, no unbounded buffer. Seeds from ``corpus/`` are mutated
as well as drawn at random. A longer run with atheris: ``tests/security/fuzz_atheris.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from pathlib import Path
from typing import Any

import hpack
import orjson
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.codecs.json import decode_request as decode_json
from server.errors import SluiceError
from server.grpc import frames as f
from server.grpc.codec import decode_request as decode_proto
from server.grpc.connection import Connection
from server.grpc.generated import inference_pb2 as pb
from server.grpc.limits import Limits

CORPUS = Path(__file__).parent / "corpus"
SEEDS = {path.name: path.read_bytes() for path in sorted(CORPUS.iterdir())}
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, prefix: str) -> bytes:
    """A seed of ``corpus/`` whose name starts with ``prefix``, with bytes flipped, cut,
    inserted or repeated."""
    seed = bytearray(draw(st.sampled_from([v for k, v in SEEDS.items() if k.startswith(prefix)])))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        at = draw(st.integers(0, max(len(seed) - 1, 0)))
        if kind == "flip" and seed:
            seed[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del seed[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            seed[at:at] = draw(st.binary(max_size=16))
        else:
            seed[at:at] = seed[at : at + draw(st.integers(1, 32))] * draw(st.integers(1, 4))
    return bytes(seed)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
INPUT = st.fixed_dictionaries(
    {
        "name": st.text(max_size=6),
        "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", "FP16", "X", 3]),
        "shape": st.lists(st.integers(-2, 5), max_size=4),
    },
    optional={"data": JSON, "parameters": JSON},
)


def check_json(body: bytes, header_length: int | None = None) -> None:
    try:
        request, _ = decode_json("m", "", body, header_length)
    except SluiceError:
        return
    for tensor in request.inputs:
        assert tensor.data.size >= 0


@FAST
@given(st.binary(max_size=512))
def test_json_codec_on_any_bytes(body: bytes) -> None:
    check_json(body)


@FAST
@given(st.fixed_dictionaries({"inputs": st.lists(INPUT, max_size=3)}, optional={"id": JSON}))
def test_json_codec_on_request_shaped_documents(doc: dict[str, Any]) -> None:
    check_json(json.dumps(doc).encode())


@FAST
@given(mutated("json"), st.none() | st.integers(-5, 400))
def test_json_codec_on_mutated_seeds(body: bytes, header_length: int | None) -> None:
    check_json(body, header_length)


def check_proto(data: bytes) -> None:
    try:
        message = pb.ModelInferRequest.FromString(data)
    except DecodeError:
        return
    try:
        decode_proto(message, None)
    except SluiceError:
        return


@FAST
@given(st.binary(max_size=512))
def test_protobuf_decoder_on_any_bytes(data: bytes) -> None:
    check_proto(data)


@FAST
@given(mutated("proto"))
def test_protobuf_decoder_on_mutated_seeds(data: bytes) -> None:
    check_proto(data)


@FAST
@given(st.binary(max_size=256))
def test_hpack_decoder_raises_only_its_error(block: bytes) -> None:
    decoder = f.HeaderDecoder(64 << 10)
    with contextlib.suppress(f.HPACKError):
        decoder.decode(block)


class Transport(asyncio.Transport):
    """The test double at the transport boundary: records what the connection writes."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


FRAME = st.tuples(
    st.sampled_from(range(11)), st.integers(0, 255), st.integers(0, 9), st.binary(max_size=64)
)


async def feed(chunks: list[bytes]) -> tuple[Connection, Transport]:
    limits = Limits(max_message_bytes=1 << 16, max_frame_size=1 << 14)
    connection = Connection({}, limits, lambda _: None)
    transport = Transport()
    connection.connection_made(transport)
    for chunk in chunks:
        connection.data_received(chunk)
        assert len(connection._buf) <= limits.max_frame_size + f.HEAD_SIZE
    await asyncio.sleep(0)
    connection.connection_lost(None)
    return connection, transport


@FAST
@given(st.lists(FRAME, max_size=40), st.integers(1, 64))
def test_connection_on_any_frames(frames: list[tuple[int, int, int, bytes]], cut: int) -> None:
    wire = f.PREFACE + f.settings_frame({}) + b"".join(f.frame(*x) for x in frames)
    chunks = [wire[i : i + cut] for i in range(0, len(wire), cut)]
    _, transport = asyncio.run(feed(chunks))
    assert transport.out.startswith(f.HEAD.pack(0, 30, f.SETTINGS, 0, 0)[:3])


@FAST
@given(mutated("h2"))
def test_connection_on_mutated_seeds(wire: bytes) -> None:
    asyncio.run(feed([wire]))


@FAST
@given(st.binary(max_size=512))
def test_connection_on_any_bytes_after_the_preface(data: bytes) -> None:
    asyncio.run(feed([f.PREFACE + data]))


def test_the_seeds_are_accepted() -> None:
    """The corpus holds valid inputs, so mutations start from deep paths."""
    request, _ = decode_json("m", "", SEEDS["json-infer.json"], None)
    assert request.inputs[0].name == "INPUT0"
    assert pb.ModelInferRequest.FromString(SEEDS["proto-infer.bin"]).model_name == "identity_fp32"
    _, transport = asyncio.run(feed([SEEDS["h2-call.bin"]]))
    assert not transport.closed and b"grpc-status" in bytes(transport.out)


def _write_seeds() -> None:  # pragma: no cover - how the corpus was made
    (CORPUS / "json-infer.json").write_bytes(
        orjson.dumps(
            {
                "id": "r1",
                "inputs": [
                    {"name": "INPUT0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                    {"name": "INPUT1", "shape": [2], "datatype": "BYTES", "data": ["a", "bc"]},
                ],
                "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
            }
        )
    )
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [1, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 12},
                }
            ]
        }
    )
    (CORPUS / "json-binary.bin").write_bytes(header + struct.pack("<3f", 1, 2, 3))
    request = pb.ModelInferRequest(model_name="identity_fp32", id="r1")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 3])
    request.raw_input_contents.append(struct.pack("<3f", 1, 2, 3))
    request.parameters["priority"].int64_param = 1
    (CORPUS / "proto-infer.bin").write_bytes(request.SerializeToString())
    block = hpack.Encoder().encode(
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/inference.GRPCInferenceService/ModelInfer"),
            (":authority", "x"),
            ("content-type", "application/grpc"),
            ("grpc-timeout", "5S"),
        ]
    )
    message = request.SerializeToString()
    wire = f.PREFACE + f.settings_frame({f.INITIAL_WINDOW_SIZE: 1 << 20})
    wire += f.frame(f.HEADERS, f.END_HEADERS, 1, block)
    wire += f.frame(f.DATA, f.END_STREAM, 1, f.MESSAGE_PREFIX.pack(0, len(message)) + message)
    wire += f.frame(f.PING, 0, 0, b"12345678") + f.window_update(0, 1000)
    (CORPUS / "h2-call.bin").write_bytes(wire)


def test_an_integer_over_64_bits_is_a_clean_400() -> None:
    """Found by the property test above: simdjson raised RuntimeError, answered as a 500."""
    try:
        decode_json("m", "", b'{"id": -9223372036854775809, "inputs": []}')
    except SluiceError as exc:
        assert exc.status == 400 and "malformed JSON" in exc.message
    else:
        raise AssertionError("accepted")
