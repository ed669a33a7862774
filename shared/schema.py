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

import functools
from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import Message

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


def json_name(enum: EnumDescriptor, number: int) -> str:
    """How JSON answers, metrics labels and messages spell an enum value: its proto name less the enum's prefix.

    The proto prefixes every value with its enum's name (Buf's ENUM_VALUE_PREFIX:
    ``TIER_NAME_EDGE``, ``DATA_TYPE_FP32``); the HTTP gateway and the SDK keep the
    short names they always had (``EDGE``, ``FP32``). The zero value keeps its whole
    name (``TIER_NAME_UNSPECIFIED``); a number the enum lacks is the number itself.
    """
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    if number == 0:
        return value.name
    return value.name.removeprefix(_value_prefix(enum.name))


def json_names(enum: EnumDescriptor) -> dict[int, str]:
    """:func:`json_name` of every value of ``enum``, by number."""
    return {value.number: json_name(enum, value.number) for value in enum.values}


def _value_prefix(enum_name: str) -> str:
    """``TierName`` -> ``TIER_NAME_``: the enum's name in UPPER_SNAKE_CASE."""
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(enum_name)).upper() + "_"


def shorten_enums(message: Message, data: dict[str, Any]) -> None:
    """Respell, in place, every enum value of ``data`` (``message`` as proto3 JSON) by :func:`json_name`."""
    _shorten(message.DESCRIPTOR, data)


def _shorten(descriptor: Descriptor, data: dict[str, Any]) -> None:
    for field, enum in _enum_paths(descriptor):
        value = data.get(field.name)
        if value is None:
            continue
        if enum is not None:
            names = _json_names_of(enum)
            data[field.name] = [names.get(v, v) for v in value] if field.is_repeated else names.get(value, value)
        elif is_map(field):
            for item in value.values():
                _shorten(map_types(field)[1].message_type, item)
        else:
            for item in value if field.is_repeated else (value,):
                _shorten(field.message_type, item)


@functools.cache
def _enum_paths(descriptor: Descriptor) -> tuple[tuple[FieldDescriptor, EnumDescriptor | None], ...]:
    """The fields of ``descriptor`` that are enums, or messages (map values) that hold one somewhere; enum or None."""
    found = []
    for field in descriptor.fields:
        held = map_types(field)[1] if is_map(field) else field
        if held.enum_type is not None and not is_map(field):
            found.append((field, held.enum_type))
        elif held.message_type is not None and _enum_paths(held.message_type):
            found.append((field, None))
    return tuple(found)


@functools.cache
def _json_names_of(enum: EnumDescriptor) -> dict[str, str]:
    """Proto value name -> :func:`json_name`, for respelling MessageToDict's output."""
    return {value.name: json_name(enum, value.number) for value in enum.values}
