"""The proto's enum values follow Buf's prefix rule, and JSON, metrics and the SDK spell them by their short names."""

from __future__ import annotations

from splitexit.results import message_json
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_views as views
from splitexit.shared.schema import json_name, json_names
from splitexit.shared.tiers import Tier


def test_every_enum_value_is_prefixed_with_its_enum_name() -> None:
    for enum in pb.DESCRIPTOR.enum_types_by_name.values():
        prefix = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(enum.name)).upper() + "_"
        assert [value.name for value in enum.values if not value.name.startswith(prefix)] == [], enum.name
        assert enum.values_by_number[0].name == f"{prefix}UNSPECIFIED"


def test_short_names_drop_the_prefix_and_keep_the_zero_value_whole() -> None:
    assert json_names(pb.TierName.DESCRIPTOR) == {0: "TIER_NAME_UNSPECIFIED", 1: "DEVICE", 2: "EDGE", 3: "CLOUD"}
    assert json_name(pb.DataType.DESCRIPTOR, pb.DATA_TYPE_FP32) == "FP32"
    assert json_name(pb.DataType.DESCRIPTOR, 99) == "99"
    reasons = [member.name for member in views.DegradedReason]
    assert reasons == [
        "DEGRADED_REASON_UNSPECIFIED",
        "NEXT_TIER_UNREACHABLE",
        "NEXT_TIER_OVERLOADED",
        "NEXT_TIER_TOO_SLOW",
    ]


def test_message_json_spells_nested_and_repeated_enums_short() -> None:
    answer = pb.InferResponse(
        exit_tier=pb.TIER_NAME_EDGE,
        hops=[pb.Hop(tier=Tier.DEVICE.proto), pb.Hop(tier=Tier.EDGE.proto)],
        degraded=True,
        degradation=pb.Degradation(reason=pb.DEGRADED_REASON_NEXT_TIER_TOO_SLOW, tier=pb.TIER_NAME_EDGE),
    )
    data = message_json(answer)
    assert data["exit_tier"] == "EDGE" and [hop["tier"] for hop in data["hops"]] == ["DEVICE", "EDGE"]
    assert data["degradation"] == {"reason": "NEXT_TIER_TOO_SLOW", "tier": "EDGE", "message": ""}
    assert Tier.from_proto(pb.TIER_NAME_CLOUD) is Tier.CLOUD and Tier.CLOUD.proto == pb.TIER_NAME_CLOUD
