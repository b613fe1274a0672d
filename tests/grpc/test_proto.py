"""The committed stubs match a fresh generation, and the wire format matches Triton's client."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from pathlib import Path

import pytest
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from tritonclient.grpc import model_config_pb2, service_pb2  # noqa: F401 (registers Triton's)

from server.grpc import codegen
from server.grpc.generated import inference_pb2 as pb
from server.grpc.generated import inference_pb2_grpc as pb_grpc


def test_committed_stubs_describe_the_proto(tmp_path: Path) -> None:
    """Whatever grpcio-tools is installed: the stubs carry exactly the .proto's descriptor."""
    from grpc_tools import protoc

    out = tmp_path / "inference.desc"
    args = ["protoc", f"-I{codegen.PROTO.parent}", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, str(codegen.PROTO)]) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    _drop_json_names(fresh.message_type)  # protoc's Python output leaves them out
    committed = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(committed)
    assert committed == fresh, "stale stubs: run `make proto` and commit the result"


def _drop_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _drop_json_names(message.nested_type)


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    """Byte for byte, when the installed grpcio-tools is the one that generated them."""
    installed = importlib.metadata.version("grpcio-tools")
    if installed != pb_grpc.GRPC_GENERATED_VERSION:
        pytest.skip(
            f"stubs come from grpcio-tools {pb_grpc.GRPC_GENERATED_VERSION}, not {installed}"
        )
    for fresh in codegen.generate(tmp_path):
        committed = codegen.GENERATED / fresh.name
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} is stale: run `make proto` and commit the result"
        )


def _messages(
    container: descriptor.FileDescriptor | descriptor.Descriptor,
) -> list[descriptor.Descriptor]:
    found = []
    for message in (
        container.message_types_by_name.values()
        if isinstance(container, descriptor.FileDescriptor)
        else container.nested_types
    ):
        found += [message, *_messages(message)]
    return found


def _type_name(field: descriptor.FieldDescriptor) -> str:
    kind = field.message_type or field.enum_type
    return kind.full_name if kind else ""


TRITON = descriptor_pool.Default()
OURS = _messages(pb.DESCRIPTOR)


@pytest.mark.parametrize("message", OURS, ids=[m.full_name for m in OURS])
def test_message_fields_match_triton(message: descriptor.Descriptor) -> None:
    theirs = TRITON.FindMessageTypeByName(message.full_name)
    for field in message.fields:
        other = theirs.fields_by_name.get(field.name)
        assert other is not None, f"{message.full_name}.{field.name} is not in Triton's"
        assert (field.number, field.type, field.is_repeated, _type_name(field)) == (
            other.number,
            other.type,
            other.is_repeated,
            _type_name(other),
        ), f"{message.full_name}.{field.name}"


def test_enums_match_triton() -> None:
    enums = list(pb.DESCRIPTOR.enum_types_by_name.values())
    enums += [e for m in OURS for e in m.enum_types]
    assert enums
    for enum in enums:
        theirs = TRITON.FindEnumTypeByName(enum.full_name)
        for value in enum.values:
            assert theirs.values_by_name[value.name].number == value.number, value.name


def test_service_methods_match_triton() -> None:
    ours = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = TRITON.FindServiceByName("inference.GRPCInferenceService")
    for method in ours.methods:
        other = theirs.methods_by_name[method.name]
        assert method.input_type.full_name == other.input_type.full_name
        assert method.output_type.full_name == other.output_type.full_name
        assert (method.client_streaming, method.server_streaming) == (
            other.client_streaming,
            other.server_streaming,
        )
