"""The device tier: the clients' entry point, hosting the first blocks."""

from __future__ import annotations

import grpc

from device.servicer import DeviceServicer
from device.settings import DeviceSettings
from shared.node import TierNode
from shared.proto import splitexit_pb2 as pb
from shared.proto import splitexit_pb2_grpc as pb_grpc
from shared.server import run_tier


async def serve(settings: DeviceSettings | None = None) -> None:
    settings = settings or DeviceSettings()
    node = TierNode.from_settings(settings)

    def add_device_service(server: grpc.aio.Server) -> str:
        pb_grpc.add_DeviceServicer_to_server(DeviceServicer(node, settings), server)
        return pb.DESCRIPTOR.services_by_name["Device"].full_name

    await run_tier(settings, node, [add_device_service])
