"""Start a tier's grpc.aio server, with health checking and reflection, and stop it cleanly.

Every tier serves ``grpc.health.v1.Health`` (SERVING once its models are
loaded, NOT_SERVING while it drains) and server reflection, so generic
clients such as ``grpcurl`` and ``grpc_health_probe`` work against it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from splitexit.shared.interceptors import ServingInterceptor
from splitexit.shared.link import channel_options
from splitexit.shared.metrics import serve_metrics
from splitexit.shared.node import TierNode
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.settings import TierSettings
from splitexit.shared.tier_servicer import TierServicer

log = logging.getLogger(__name__)
GRACE_S = 5.0

# Each adds one servicer to a server and returns the full name of its service.
ServiceAdder = Callable[[grpc.aio.Server], str]


async def run_tier(
    settings: TierSettings,
    node: TierNode,
    services: Sequence[ServiceAdder],
    also_run: Sequence[Callable[[asyncio.Event], Awaitable[None]]] = (),
    default_model: str = "",
) -> None:
    """Serve until SIGINT/SIGTERM; ``also_run`` coroutines share the stop event (e.g. HTTP).

    ``default_model`` is what metrics call a request that names no model (the device's default).
    """
    interceptor = ServingInterceptor(node.metrics, settings.tier.value, default_model)
    server = grpc.aio.server(interceptors=[interceptor], options=channel_options(settings.max_message_bytes))
    names = [add(server) for add in services]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    if server.add_insecure_port(settings.address) == 0:
        raise OSError(f"cannot bind the {settings.tier.value} to {settings.address}")
    if settings.metrics_port:
        also_run = [*also_run, serve_metrics(node.metrics.registry, settings.host, settings.metrics_port)]
        log.info("%s metrics on http://%s:%d/metrics", settings.tier.value, settings.host, settings.metrics_port)
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s serving %s on %s", settings.tier.value, ", ".join(m.name for m in node.registry), settings.address)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    helpers = [asyncio.create_task(run(stop)) for run in also_run]
    await stop.wait()

    log.info("%s draining", settings.tier.value)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(GRACE_S)
    await asyncio.gather(*helpers)
    await node.close()


def tier_service(node: TierNode) -> ServiceAdder:
    """The ``Tier`` service (``Continue``) that the edge and the cloud serve."""

    def add(server: grpc.aio.Server) -> str:
        pb_grpc.add_TierServicer_to_server(TierServicer(node), server)
        return pb.DESCRIPTOR.services_by_name["Tier"].full_name

    return add


async def serve_resuming_tier(settings: TierSettings) -> None:
    """Run a tier that only resumes samples: the edge or the cloud."""
    node = TierNode.from_settings(settings)
    await run_tier(settings, node, [tier_service(node)])
