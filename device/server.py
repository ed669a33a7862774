"""The device tier: the clients' entry point, hosting the first blocks."""

from __future__ import annotations

import grpc

from splitexit.device.auth import TokenCheck, Tokens
from splitexit.device.http_server import http_gateway
from splitexit.device.servicer import DeviceServicer
from splitexit.device.settings import DeviceSettings
from splitexit.shared.node import TierNode
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.server import run_tier


async def serve(settings: DeviceSettings | None = None) -> None:
    settings = settings or DeviceSettings()
    node = TierNode.from_settings(settings)
    servicer = DeviceServicer(node, settings)
    tokens = Tokens.from_settings(settings)  # read once, for gRPC and HTTP alike
    helpers = [http_gateway(servicer, settings, tokens)] if settings.http_port else []

    def add_device_service(server: grpc.aio.Server) -> str:
        pb_grpc.add_DeviceServicer_to_server(servicer, server)
        return pb.DESCRIPTOR.services_by_name["Device"].full_name

    try:
        await run_tier(settings, node, [add_device_service], helpers, [TokenCheck(tokens)])
    finally:
        servicer.close()
        servicer.policies.save_all()  # what the policies learned survives a restart
