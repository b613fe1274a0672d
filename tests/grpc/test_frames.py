"""Header blocks and frames of the native gRPC edge, against ``hpack`` as the oracle."""

from __future__ import annotations

import random

import hpack
import pytest

from server.grpc import frames as f


def test_cached_decoding_matches_hpack_as_the_table_changes() -> None:
    rng = random.Random(0)
    encoder, oracle, ours = hpack.Encoder(), hpack.Decoder(), f.HeaderDecoder(1 << 16)
    base = [(":method", "POST"), (":path", "/inference.GRPCInferenceService/ModelInfer")]
    for i in range(400):
        headers: list[tuple[str, str] | hpack.NeverIndexedHeaderTuple] = list(base)
        if rng.random() < 0.3:
            headers.append(("grpc-timeout", f"{rng.randrange(1, 99)}m"))  # inserted
        if rng.random() < 0.3:
            headers.append(hpack.NeverIndexedHeaderTuple("authorization", f"t{i % 3}"))
        if rng.random() < 0.05:
            encoder.header_table_size = rng.choice([256, 4096])  # a table size update
        block = encoder.encode(headers)
        assert ours.decode(block) == [(str(k), str(v)) for k, v in oracle.decode(block)]


@pytest.mark.parametrize(
    ("headers", "keeps"),
    [
        ([(":method", "POST")], True),  # static table, indexed
        ([("x-new", "1")], False),  # literal with incremental indexing
        ([hpack.NeverIndexedHeaderTuple("x-secret", "1")], True),
    ],
)
def test_which_blocks_keep_the_table(headers: list[tuple[str, str]], keeps: bool) -> None:
    assert f._keeps_table(hpack.Encoder().encode(headers)) is keeps


def test_a_truncated_block_is_not_cached() -> None:
    block = hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple("x-secret", "value")])
    assert not f._keeps_table(block[:-2])
    with pytest.raises(f.HPACKError):
        f.HeaderDecoder(1 << 16).decode(block[:-2])


def test_response_blocks_decode_with_hpack() -> None:
    decoded = hpack.Decoder().decode(f.RESPONSE_HEADERS + f.status_block(5, "no 'mödel' 100%"))
    fields = dict(decoded)
    assert fields[":status"] == "200" and fields["content-type"] == "application/grpc"
    assert fields["grpc-status"] == "5"
    assert fields["grpc-message"] == "no 'm%C3%B6del' 100%25"


def test_long_literals_use_multibyte_lengths() -> None:
    value = "x" * f.MAX_STATUS_MESSAGE
    assert hpack.Decoder().decode(f.status_block(13, value)) == [
        ("grpc-status", "13"),
        ("grpc-message", value),
    ]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1H", 3600.0), ("2M", 120.0), ("3S", 3.0), ("250m", 0.25), ("7u", 7e-6), ("9n", 9e-9)],
)
def test_grpc_timeout(value: str, seconds: float) -> None:
    assert f.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "5", "m", "123456789S", "1.5S", "-1S", "5s"])
def test_malformed_grpc_timeout(value: str) -> None:
    assert f.parse_timeout(value) is None


def test_very_long_status_messages_are_cut() -> None:
    fields = dict(hpack.Decoder().decode(f.status_block(13, "y" * 100_000)))
    assert len(fields["grpc-message"]) == f.MAX_STATUS_MESSAGE
    assert fields["grpc-message"].endswith("...")
