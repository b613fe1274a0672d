"""Status codes from the edge's error table, deadlines and cancellation."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from server.errors import ModelFailed, Overloaded, PayloadTooLarge
from server.grpc.errors import INTERNAL_MESSAGE, status_of

from .conftest import MAX_MESSAGE_BYTES, SLOW_DELAY_US, Live


def fp32(rows: int = 1, cols: int = 3) -> list[triton.InferInput]:
    data = np.zeros((rows, cols), dtype=np.float32)
    return [triton.InferInput("INPUT0", [rows, cols], "FP32").set_data_from_numpy(data)]


def status(error: InferenceServerException) -> str:
    return str(error.status())


def test_unknown_model_is_not_found(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer("nope", fp32())
    assert status(err.value) == "StatusCode.NOT_FOUND"
    assert "nope" in err.value.message()


def test_unknown_version_is_not_found(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer("identity_fp32", fp32(), model_version="9")
    assert status(err.value) == "StatusCode.NOT_FOUND"


def test_bad_shape_is_invalid_argument(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer("identity_fp32", fp32(cols=4))
    assert status(err.value) == "StatusCode.INVALID_ARGUMENT"
    assert "shape" in err.value.message()


def test_wrong_datatype_is_invalid_argument(client: triton.InferenceServerClient) -> None:
    data = np.zeros((1, 3), dtype=np.int32)
    inputs = [triton.InferInput("INPUT0", [1, 3], "INT32").set_data_from_numpy(data)]
    with pytest.raises(InferenceServerException) as err:
        client.infer("identity_fp32", inputs)
    assert status(err.value) == "StatusCode.INVALID_ARGUMENT"
    assert "datatype" in err.value.message()


def test_missing_input_is_invalid_argument(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer("add_sub", fp32(cols=4))
    assert status(err.value) == "StatusCode.INVALID_ARGUMENT"
    assert "INPUT1" in err.value.message()


def test_unknown_requested_output_is_invalid_argument(
    client: triton.InferenceServerClient,
) -> None:
    outputs = [triton.InferRequestedOutput("NOPE")]
    with pytest.raises(InferenceServerException) as err:
        client.infer("identity_fp32", fp32(), outputs=outputs)
    assert status(err.value) == "StatusCode.INVALID_ARGUMENT"


def test_oversized_message_is_resource_exhausted(client: triton.InferenceServerClient) -> None:
    rows = MAX_MESSAGE_BYTES // 12 + 1
    with pytest.raises(InferenceServerException) as err:
        client.infer("identity_fp32", fp32(rows=rows))
    assert status(err.value) == "StatusCode.RESOURCE_EXHAUSTED"


def test_server_side_timeout_is_deadline_exceeded(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer("slow", fp32(), timeout=50_000)  # µs, shorter than the queue delay
    assert status(err.value) == "StatusCode.DEADLINE_EXCEEDED"
    assert "timed out" in err.value.message()


def test_client_deadline_is_deadline_exceeded(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer("slow", fp32(), client_timeout=0.1)
    assert status(err.value) == "StatusCode.DEADLINE_EXCEEDED"


def test_cancelled_call_is_dropped_before_it_runs(
    client: triton.InferenceServerClient, live: Live
) -> None:
    settle(live)  # an earlier test's abandoned call may still sit in the slow model's queue
    before = live.engine.statistics("slow")[0]["execution_count"]
    cancelled = cancelled_count(live)
    call = client.async_infer("slow", fp32(), callback=lambda result, error: None)
    time.sleep(0.1)
    call.cancel()
    time.sleep(SLOW_DELAY_US / 1e6 + 0.2)  # past the moment the batch would have left
    assert live.engine.model_ready("slow")
    assert live.engine.statistics("slow")[0]["execution_count"] == before
    assert cancelled_count(live) == cancelled + 1


def settle(live: Live, timeout: float = 5.0) -> None:
    """Wait until the slow model's queue is empty and its cancellations are counted."""
    deadline = time.monotonic() + timeout
    while live.engine.get("slow").batcher.queued and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)


def cancelled_count(live: Live) -> float:
    labels = {"model": "slow", "version": "1", "reason": "Cancelled"}
    value = live.engine.metrics.registry.get_sample_value(
        "sluice_inference_request_failure_total", labels
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (Overloaded("queue full"), grpc.StatusCode.UNAVAILABLE),
        (PayloadTooLarge("too big"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ModelFailed("boom"), grpc.StatusCode.INTERNAL),
    ],
)
def test_error_table(exc: Exception, code: grpc.StatusCode) -> None:
    assert status_of(exc) == (code, str(exc))


def test_unexpected_errors_are_internal_and_generic(caplog: pytest.LogCaptureFixture) -> None:
    assert status_of(KeyError("secret detail")) == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    assert caplog.records[-1].exc_info is not None
