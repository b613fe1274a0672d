"""Health, metadata, configuration, statistics and the repository extension over gRPC."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from server.resources import usable_cores


def test_health(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("identity_fp32")
    assert not client.is_model_ready("identity_fp32", "7")
    assert not client.is_model_ready("nope")


def test_server_metadata(client: triton.InferenceServerClient) -> None:
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "sluice"
    assert "model_repository" in metadata["extensions"]


def test_model_metadata(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("add_sub")
    assert metadata.name == "add_sub"
    assert list(metadata.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("INPUT0", "FP32", [-1, 4]),
        ("INPUT1", "FP32", [-1, 4]),
    ]
    assert [t.name for t in metadata.outputs] == ["OUTPUT0", "OUTPUT1"]


def test_model_metadata_unknown_model(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("nope")
    assert str(err.value.status()) == "StatusCode.NOT_FOUND"


def test_model_config_parses_with_tritons_client(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("identity_bytes").config
    assert config.name == "identity_bytes"
    assert config.platform == "onnxruntime_onnx"
    assert config.backend == "onnxruntime"
    assert config.max_batch_size == 64
    assert config.input[0].name == "INPUT0"
    assert config.input[0].data_type == 13  # TYPE_STRING
    assert list(config.input[0].dims) == [3]
    # "auto", one worker: one 1-thread instance per core this process may use.
    assert config.instance_group[0].count == usable_cores().count
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert config.parameters["workers"].string_value == "1"
    assert config.instance_group[0].kind == 2  # KIND_CPU
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 1024


def test_model_config_of_slow_model_shows_its_queue_delay(
    client: triton.InferenceServerClient,
) -> None:
    config = client.get_model_config("slow", as_json=True)["config"]
    assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 600_000


def test_statistics_count_inferences(client: triton.InferenceServerClient) -> None:
    data = np.zeros((2, 3), dtype=np.float16)
    inputs = [triton.InferInput("INPUT0", [2, 3], "FP16").set_data_from_numpy(data)]
    before = client.get_inference_statistics("identity_fp16").model_stats[0]
    client.infer("identity_fp16", inputs)
    after = client.get_inference_statistics("identity_fp16").model_stats[0]
    assert after.name == "identity_fp16" and after.version == "1"
    assert after.inference_count == before.inference_count + 2
    assert after.inference_stats.success.count == before.inference_stats.success.count + 1
    assert after.batch_stats[0].batch_size >= 1
    assert len(client.get_inference_statistics().model_stats) > 10


def test_repository_index_load_unload(client: triton.InferenceServerClient) -> None:
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index["spare"].state == "READY" and index["spare"].version == "1"
    client.unload_model("spare")
    assert not client.is_model_ready("spare")
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index["spare"].state == "UNAVAILABLE"
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("spare")
    assert str(err.value.status()) == "StatusCode.UNAVAILABLE"
    client.load_model("spare")
    assert client.is_model_ready("spare")


def test_load_unknown_model_is_not_found(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.load_model("nope")
    assert str(err.value.status()) == "StatusCode.NOT_FOUND"


def test_load_with_config_override_is_refused(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.load_model("spare", config='{"max_batch_size": 8}')
    assert str(err.value.status()) == "StatusCode.INVALID_ARGUMENT"
