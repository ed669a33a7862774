"""What a field of ``splitexit.proto`` is in Python: the one reading of the descriptors every derived view shares.

The proto is the only schema. The SDK's typed results
(:mod:`splitexit.shared.proto.splitexit_views`, written by ``protos/generate.py``)
and the HTTP gateway's pydantic models and OpenAPI document
(:mod:`splitexit.device.http_models`, built at import) are both derived from
the message descriptors with the rules here: which Python type a scalar is, the
range of an integer, which fields are left out of an answer when unset, and
which messages a client can get back.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor

F = FieldDescriptor
SCALARS: dict[int, type] = {
    F.CPPTYPE_INT32: int,
    F.CPPTYPE_INT64: int,
    F.CPPTYPE_UINT32: int,
    F.CPPTYPE_UINT64: int,
    F.CPPTYPE_DOUBLE: float,
    F.CPPTYPE_FLOAT: float,
    F.CPPTYPE_BOOL: bool,
}
INT_RANGES: dict[int, tuple[int, int]] = {
    F.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    F.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    F.CPPTYPE_UINT32: (0, 2**32 - 1),
    F.CPPTYPE_UINT64: (0, 2**64 - 1),
}
TIER_ENUM = "splitexit.v1.TierName"  # read as splitexit.shared.tiers.Tier, the one tier type in Python


def scalar_type(field: FieldDescriptor) -> type:
    """``int``, ``float``, ``bool``, ``str`` or ``bytes`` for a field that is neither a message nor an enum."""
    if field.type == F.TYPE_BYTES:
        return bytes
    return SCALARS.get(field.cpp_type, str)


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def map_types(field: FieldDescriptor) -> tuple[FieldDescriptor, FieldDescriptor]:
    """The key and value fields of a ``map<K, V>`` field."""
    entry = field.message_type
    return entry.fields_by_name["key"], entry.fields_by_name["value"]


def absent_when_unset(field: FieldDescriptor) -> bool:
    """True for a singular field with presence (a message, a ``optional`` scalar, a oneof member).

    Such a field is ``None`` in the SDK's results and left out of the JSON answer when unset;
    every other field is always there (its zero value, or an empty list).
    """
    return field.has_presence and not field.is_repeated


def answer_messages(file: FileDescriptor, service: str = "Device") -> list[Descriptor]:
    """Every message a client of ``service`` can get back, each after the messages its fields hold."""
    found: dict[str, Descriptor] = {}

    def visit(message: Descriptor) -> None:
        if message.full_name in found or message.GetOptions().map_entry:
            return
        for field in message.fields:
            if field.message_type is not None:
                visit(field.message_type)
        found[message.full_name] = message

    for method in file.services_by_name[service].methods:
        visit(method.output_type)
    return list(found.values())


def enums_of(messages: list[Descriptor]) -> Iterator[EnumDescriptor]:
    """The enums the fields of ``messages`` use, once each, in order of first use."""
    seen: set[str] = set()
    for message in messages:
        for field in message.fields:
            kind = field.enum_type or (map_types(field)[1].enum_type if is_map(field) else None)
            if kind is not None and kind.full_name not in seen:
                seen.add(kind.full_name)
                yield kind
