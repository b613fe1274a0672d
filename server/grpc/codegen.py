"""Generate the gRPC stubs from ``protos/inference.proto`` with grpcio-tools.

    python -m server.grpc.codegen              # into server/grpc/generated/
    python -m server.grpc.codegen --out DIR    # anywhere else (the drift test does this)

The stubs are committed; ``tests/grpc/test_proto.py`` fails when they differ from a fresh
generation. They come from grpcio-tools 1.72.1 (pinned in the dev extra), whose protoc writes
gencode 6.30.0: protobuf runtimes accept gencode no newer than themselves, so these load on
every runtime from 6.30.0 (the oldest current ``tritonclient`` accepts) through 7.x, the range
pyproject declares (``tests/grpc/test_protobuf_versions.py`` installs both ends). Stubs from a
newer grpcio-tools would refuse the protobuf 6 that ``pip install tritonclient`` brings.
Two edits follow protoc:

- the service module imports the message module package-relatively;
- the messages are built into a private descriptor pool. Triton's client (``tritonclient``)
  registers the same ``inference.*`` names in the default pool, and protobuf refuses a second
  file defining them, so a process holding both (a test, a benchmark) could not import ours.
  The wire format does not depend on the pool.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "protos" / "inference.proto"
GENERATED = Path(__file__).resolve().parent / "generated"
FILES = ("__init__.py", "inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")

_INIT = '"""Stubs generated from protos/inference.proto by server.grpc.codegen. Do not edit."""\n'
_EDITS = {
    "inference_pb2.py": (
        "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(",
        "POOL = _descriptor_pool.DescriptorPool()\nDESCRIPTOR = POOL.AddSerializedFile(",
    ),
    "inference_pb2_grpc.py": (
        "import inference_pb2 as inference__pb2",
        "from . import inference_pb2 as inference__pb2",
    ),
}


class CodegenError(RuntimeError):
    """protoc failed, or its output no longer has the shape the edits expect."""


def generate(out: Path, proto: Path = PROTO) -> list[Path]:
    """Write the stubs for ``proto`` into ``out``; return the files written."""
    from grpc_tools import protoc  # a build-time dependency, imported only here

    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{proto.parent}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        str(proto),
    ]
    if protoc.main(args) != 0:
        raise CodegenError(f"protoc failed on {proto}")
    for name, (old, new) in _EDITS.items():
        path = out / name
        text = path.read_text()
        if text.count(old) != 1:
            raise CodegenError(f"{path}: expected exactly one '{old}' to rewrite")
        path.write_text(text.replace(old, new))
    (out / "__init__.py").write_text(_INIT)
    return [out / name for name in FILES]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=GENERATED)
    args = parser.parse_args(argv)
    for path in generate(args.out):
        sys.stdout.write(f"{path}\n")


if __name__ == "__main__":
    main()
