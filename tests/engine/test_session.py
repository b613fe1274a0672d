from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from benchmarks.models import save
from server.engine.session import OrtSession, select_providers
from server.errors import ConfigError
from server.settings import RuntimeConfig
from tests import models


def test_metadata_marks_dynamic_dims(tmp_path: Path) -> None:
    path = save(models.small_mlp(), tmp_path / "m.onnx")
    session = OrtSession(path, RuntimeConfig(), "m")
    assert [(s.name, s.datatype, s.shape) for s in session.inputs] == [("input", "FP32", (-1, 16))]
    assert session.batchable
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    np.testing.assert_allclose(session.run({"input": x})["output"], want, rtol=1e-6)


def test_fixed_first_dimension_is_not_batchable(tmp_path: Path) -> None:
    session = OrtSession(save(models.fixed_batch(), tmp_path / "f.onnx"), RuntimeConfig(), "f")
    assert session.inputs[0].shape == (2, 3) and not session.batchable


def test_unavailable_provider_falls_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = save(models.small_mlp(), tmp_path / "m.onnx")
    runtime = RuntimeConfig(providers=("TensorrtExecutionProvider", "CPUExecutionProvider"))
    with caplog.at_level(logging.WARNING):
        session = OrtSession(path, runtime, "m")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        assert session.providers == ("CPUExecutionProvider",)
        assert "TensorrtExecutionProvider is not available" in caplog.text


def test_provider_selection_keeps_priority_order() -> None:
    usable, missing = select_providers(
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert usable == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert missing == ["TensorrtExecutionProvider"]
    assert select_providers(["CUDAExecutionProvider"], ["CPUExecutionProvider"])[0] == [
        "CPUExecutionProvider"
    ]


def test_bf16_travels_as_uint16_bit_patterns(tmp_path: Path) -> None:
    session = OrtSession(save(models.identity("BF16"), tmp_path / "b.onnx"), RuntimeConfig(), "b")
    bits = np.array([[0x3F80, 0x4000, 0xC040]], np.uint16)
    np.testing.assert_array_equal(session.run({"INPUT0": bits})["OUTPUT0"], bits)


def test_strings_accept_bytes(tmp_path: Path) -> None:
    session = OrtSession(save(models.identity("BYTES"), tmp_path / "s.onnx"), RuntimeConfig(), "s")
    out = session.run({"INPUT0": np.array([[b"a", b"b", "é".encode()]], object)})
    assert out["OUTPUT0"].tolist() == [["a", "b", "é"]]


def test_a_corrupt_model_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        OrtSession(path, RuntimeConfig(), "bad")
