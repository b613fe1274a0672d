"""The committed stubs load on every protobuf runtime Sluice declares (``protobuf>=6.30,<8``):
6.30.0, the oldest that current tritonclient accepts, and the newest 7.x. Each is installed
into a throwaway directory by pip and put first on the path of a fresh interpreter, which
loads the stubs and round-trips a request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.grpc.generated import inference_pb2 as pb

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import google.protobuf, numpy as np
from server.grpc.generated import inference_pb2 as pb
request = pb.ModelInferRequest(model_name="m", id="x")
tensor = request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 3])
request.raw_input_contents.append(np.ones(3, np.float32).tobytes())
again = pb.ModelInferRequest.FromString(request.SerializeToString())
assert again == request and again.inputs[0].shape == [1, 3]
print(google.protobuf.__version__)
"""


@pytest.mark.parametrize("requirement", ["protobuf==6.30.0", "protobuf>=7,<8"])
def test_stubs_load_on_the_declared_protobuf_range(tmp_path: Path, requirement: str) -> None:
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path)]
    install = subprocess.run(
        [*pip, requirement],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if install.returncode != 0:
        pytest.skip(f"cannot install {requirement}: {install.stderr[-500:]}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    probe = subprocess.run(
        [sys.executable, "-W", "error", "-c", PROBE],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    version = probe.stdout.strip()
    assert version.startswith("6.30.0" if "6.30" in requirement else "7.")


def test_the_stubs_declare_the_oldest_gencode() -> None:
    source = Path(pb.__file__).read_text()
    assert "# Protobuf Python Version: 6.30.0" in source
