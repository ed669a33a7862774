"""Hypothesis strategies for any protobuf message, built field by field from its descriptor.

:func:`messages` leaves each field unset or gives it a value of its type, from
the strategy named for that field or that message type where one is given,
else from :func:`values` (edge values and any value of the wire type). So a
field added to a message later is fuzzed as soon as it exists, with hostile
values if its type is one the caller knows (a ``Tensor``, a ``Plan``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

Strategy = st.SearchStrategy[Any]
M = TypeVar("M", bound=Message)

INTEGERS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
REPEATED_MAX = 6  # values in a repeated field that no strategy is named for


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    """The range's ends, 0, 1 and -1 where they fit, or any integer in it."""
    edges = sorted({value for value in (low, high, 0, 1, -1, 2**31 - 1, 2**31) if low <= value <= high})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def values(field: FieldDescriptor, by_type: Mapping[str, Strategy], depth: int) -> Strategy:
    """One value of ``field``'s type (a message from ``by_type`` by its full name, or built to ``depth``)."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return message_of(field.message_type, by_type, depth)
    if field.type in INTEGERS:
        return integers(*INTEGERS[field.type])
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), integers(-(2**31), 2**31 - 1))
    scalars: dict[int, Strategy] = {
        FieldDescriptor.TYPE_BOOL: st.booleans(),
        FieldDescriptor.TYPE_FLOAT: st.floats(width=32),
        FieldDescriptor.TYPE_DOUBLE: st.floats(),
        FieldDescriptor.TYPE_STRING: st.text(max_size=64),
        FieldDescriptor.TYPE_BYTES: st.binary(max_size=256),
    }
    return scalars[field.type]


def message_of(descriptor: Descriptor, by_type: Mapping[str, Strategy], depth: int) -> Strategy:
    if descriptor.full_name in by_type:
        return by_type[descriptor.full_name]
    cls = GetMessageClass(descriptor)
    if depth <= 0:
        return st.just(cls())
    return messages(cls, by_type=by_type, depth=depth - 1)


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def field_values(field: FieldDescriptor, by_type: Mapping[str, Strategy], depth: int) -> Strategy:
    """What ``field`` holds: a value, a list of them for a repeated field, a dict for a map."""
    if _is_map(field):
        entry = field.message_type.fields_by_name
        keys, items = values(entry["key"], by_type, depth), values(entry["value"], by_type, depth)
        return st.dictionaries(keys, items, max_size=REPEATED_MAX)
    one = values(field, by_type, depth)
    return st.lists(one, max_size=REPEATED_MAX) if field.is_repeated else one


def messages(
    cls: type[M],
    by_field: Mapping[str, Strategy] | None = None,
    by_type: Mapping[str, Strategy] | None = None,
    depth: int = 2,
) -> st.SearchStrategy[M]:
    """Messages of ``cls``, every field unset or set: from ``by_field`` (by name, a list for a repeated
    field), from ``by_type`` (a message field, by its type's full name), else any value of its type."""
    named, typed = by_field or {}, by_type or {}
    fields = {
        field.name: st.one_of(
            st.none(), named[field.name] if field.name in named else field_values(field, typed, depth)
        )
        for field in cls.DESCRIPTOR.fields
    }
    return st.fixed_dictionaries(fields).map(lambda given: build(cls, given))


def build(cls: type[M], given: Mapping[str, Any]) -> M:
    """A ``cls`` message with the fields in ``given`` set (None: left unset)."""
    message = cls()
    for name, value in given.items():
        if value is None:
            continue
        field, target = cls.DESCRIPTOR.fields_by_name[name], getattr(message, name)
        if _is_map(field):
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            target.extend(value)
        elif isinstance(value, Message):
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message
