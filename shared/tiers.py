"""The three tiers, in the order a sample travels, and their one spelling on every surface.

:class:`Tier` is the only tier type in Python code. Its value (``"device"``,
``"edge"``, ``"cloud"``) is how settings, metrics labels, HTTP answers and logs
spell a tier; :attr:`Tier.proto` and :meth:`Tier.from_proto` convert to and from
the wire enum ``TierName``. A tier's link is the one it sends samples on:
``device-edge`` from the device, ``edge-cloud`` from the edge, none from the cloud.
"""

from __future__ import annotations

from enum import Enum

from splitexit.shared.proto import splitexit_pb2 as pb


class Tier(str, Enum):
    """The three places a block can run."""

    DEVICE = "device"
    EDGE = "edge"
    CLOUD = "cloud"

    @property
    def proto(self) -> pb.TierName.ValueType:
        """The wire enum value (``TIER_NAME_DEVICE``, ``TIER_NAME_EDGE``, ``TIER_NAME_CLOUD``)."""
        return _WIRE[self]

    @classmethod
    def from_proto(cls, value: int) -> Tier:
        """The tier of a wire enum value; ``ValueError`` for ``TIER_NAME_UNSPECIFIED`` or an unknown number."""
        tier = _FROM_WIRE.get(value)
        if tier is None:
            raise ValueError(f"no tier has the wire value {value}")
        return tier

    @property
    def next(self) -> Tier | None:
        """The tier samples travel on to from here (None for the cloud)."""
        position = TIERS.index(self)
        return TIERS[position + 1] if position + 1 < len(TIERS) else None

    @property
    def link(self) -> str | None:
        """The name of the link this tier sends on: ``device-edge``, ``edge-cloud``, or None."""
        following = self.next
        return None if following is None else f"{self.value}-{following.value}"


TIERS: tuple[Tier, ...] = tuple(Tier)
_WIRE = {tier: pb.TierName.Value(f"TIER_NAME_{tier.name}") for tier in TIERS}  # looked up per sample: built once
_FROM_WIRE = {wire: tier for tier, wire in _WIRE.items()}
