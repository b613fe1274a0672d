"""ModelStreamInfer: many requests on one stream, each answered with its own rows and id."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from server.grpc.generated import inference_pb2 as pb
from server.grpc.generated import inference_pb2_grpc as pb_grpc

from .conftest import SLOW_DELAY_US, Live

Answer = tuple[triton.InferResult | None, InferenceServerException | None]


def rows_for(i: int) -> np.ndarray:
    rows = 1 + i % 3
    return (i * 10 + np.arange(rows * 3, dtype=np.float32)).reshape(rows, 3)


def send(client: triton.InferenceServerClient, i: int, data: np.ndarray) -> None:
    tensor = triton.InferInput("INPUT0", list(data.shape), "FP32").set_data_from_numpy(data)
    client.async_stream_infer("identity_fp32", [tensor], request_id=str(i))


def collect(answers: queue.Queue[Answer], count: int) -> list[Answer]:
    return [answers.get(timeout=10) for _ in range(count)]


@pytest.fixture
def stream(client: triton.InferenceServerClient) -> Iterator[queue.Queue[Answer]]:
    answers: queue.Queue[Answer] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    yield answers
    client.stop_stream()


def test_many_requests_each_get_their_own_rows(
    client: triton.InferenceServerClient, stream: queue.Queue[Answer]
) -> None:
    for i in range(300):
        send(client, i, rows_for(i))
    seen = set()
    for result, error in collect(stream, 300):
        assert error is None and result is not None
        i = int(result.get_response().id)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), rows_for(i))
        seen.add(i)
    assert seen == set(range(300))


def test_an_error_answers_its_request_only(
    client: triton.InferenceServerClient, stream: queue.Queue[Answer]
) -> None:
    for i in range(20):
        bad = i % 5 == 0
        send(client, i, np.zeros((1, 4), np.float32) if bad else rows_for(i))
    answers = collect(stream, 20)
    errors = [e for _, e in answers if e is not None]
    ids = sorted(int(r.get_response().id) for r, _ in answers if r is not None)
    assert len(errors) == 4
    assert all("shape" in e.message() for e in errors)
    assert ids == [i for i in range(20) if i % 5]


def test_error_answers_carry_the_request_id(live: Live) -> None:
    good = pb.ModelInferRequest(model_name="identity_fp32", id="good")
    good.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 3])
    good.raw_input_contents.append(np.ones(3, np.float32).tobytes())
    bad = pb.ModelInferRequest(model_name="nope", id="bad")
    with grpc.insecure_channel(live.url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        answers = list(stub.ModelStreamInfer(iter([bad, good])))
    by_id = {a.infer_response.id: a for a in answers}
    assert "unknown model 'nope'" in by_id["bad"].error_message
    assert by_id["good"].error_message == ""
    assert by_id["good"].infer_response.raw_output_contents[0] == np.ones(3, np.float32).tobytes()


def test_final_response_flag_when_asked(
    client: triton.InferenceServerClient, stream: queue.Queue[Answer]
) -> None:
    data = rows_for(1)
    tensor = triton.InferInput("INPUT0", [1, 3], "FP32").set_data_from_numpy(data[:1])
    client.async_stream_infer("identity_fp32", [tensor], enable_empty_final_response=True)
    ((result, error),) = collect(stream, 1)
    assert error is None and result is not None
    assert result.get_response().parameters["triton_final_response"].bool_param


def test_cancelled_stream_drops_its_queued_requests(
    client: triton.InferenceServerClient, live: Live
) -> None:
    before = live.engine.statistics("slow")[0]["execution_count"]
    client.start_stream(callback=lambda result, error: None)
    for i in range(5):
        data = rows_for(i)
        tensor = triton.InferInput("INPUT0", list(data.shape), "FP32").set_data_from_numpy(data)
        client.async_stream_infer("slow", [tensor], request_id=str(i))
    time.sleep(0.1)  # queued behind the slow model's delay
    client.stop_stream(cancel_requests=True)
    time.sleep(SLOW_DELAY_US / 1e6 + 0.2)  # past the moment the batch would have left
    assert live.engine.statistics("slow")[0]["execution_count"] == before
