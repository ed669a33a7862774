"""A Python client of the device that knows nothing of splitexit: it learns the API by server reflection.

No generated stubs, no splitexit import: it asks the server's reflection
service (``grpc.reflection.v1`` or ``v1alpha``, as given) for the file that
defines ``splitexit.v1.Device``, builds the message classes from it, and calls
``ListModels`` and ``Infer`` with them. One JSON line per answer on stdout.

    python tests/interop/reflection_client.py ADDRESS v1|v1alpha IMAGE...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict
from grpc_reflection.v1alpha import reflection_pb2  # the reflection protocol's messages; v1's are the same on the wire

SERVICE = "splitexit.v1.Device"


def fetch_files(channel: grpc.Channel, version: str) -> descriptor_pool.DescriptorPool:
    """The file defining ``SERVICE`` and every file it imports, in a fresh descriptor pool."""
    info = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    listing = next(info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    assert SERVICE in {s.name for s in listing.list_services_response.service}, listing
    reply = next(info(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)]), timeout=10))
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    while len(added) < len(files):  # dependencies first
        for file in files:
            if file.name not in added and set(file.dependency) <= added:
                pool.Add(file)
                added.add(file.name)
    return pool


def main() -> None:
    address, version, *images = sys.argv[1:]
    with grpc.insecure_channel(address) as channel:
        pool = fetch_files(channel, version)
        service = pool.FindServiceByName(SERVICE)

        def method(name: str):  # noqa: ANN202
            descriptor = service.methods_by_name[name]
            reply_class = message_factory.GetMessageClass(descriptor.output_type)
            call = channel.unary_unary(
                f"/{SERVICE}/{name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=reply_class.FromString,
            )
            return message_factory.GetMessageClass(descriptor.input_type), call

        as_json = lambda m: MessageToDict(
            m, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )  # noqa: E731
        request_class, list_models = method("ListModels")
        print(json.dumps({"kind": "models", **as_json(list_models(request_class(), timeout=10))}))
        request_class, infer = method("Infer")
        for image in images:
            print(
                json.dumps(
                    {
                        "kind": "answer",
                        **as_json(infer(request_class(image=Path(image).read_bytes(), top_k=3), timeout=30)),
                    }
                )
            )
    assert not any(name.startswith("splitexit") for name in sys.modules), "the client must not use splitexit's code"


if __name__ == "__main__":
    main()
