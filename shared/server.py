"""Start a tier's grpc.aio server, with health checking and reflection, and drain it on SIGTERM.

Every tier serves ``grpc.health.v1.Health`` and server reflection, so generic
clients such as ``grpcurl`` and ``grpc_health_probe`` work against it. The
overall status (service ``""``) is SERVING once the models are loaded; the
device and the edge also report ``next-tier``, SERVING while the tier after
them does (a tier whose next tier is down still answers, degraded).

On SIGTERM (or SIGINT) a tier drains in three steps, so that a balancer that
polls health has time to look elsewhere and nothing accepted is lost:

1. health turns NOT_SERVING (``Check`` and ``Watch``) while every request is
   still served, for ``drain_grace_s``;
2. streams read no more requests, answer the ones they read and end with
   UNAVAILABLE; new calls are refused; accepted calls finish, for at most
   ``drain_timeout_s``;
3. the helpers (HTTP gateway, metrics) stop, the links close, and the process
   exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from splitexit.shared.interceptors import ServingInterceptor
from splitexit.shared.lifecycle import Helper, Lifecycle
from splitexit.shared.link import channel_options
from splitexit.shared.metrics import serve_metrics
from splitexit.shared.node import TierNode
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.reflection import enable_reflection
from splitexit.shared.security import PeerTierCheck, server_credentials
from splitexit.shared.settings import TierSettings
from splitexit.shared.tier_servicer import TierServicer
from splitexit.shared.tiers import Tier
from splitexit.shared.workers import serve_workers

log = logging.getLogger(__name__)
NEXT_TIER_HEALTH = "next-tier"  # the health service name that reports the next tier's state
CALLS_SETTLE_S = 0.2  # after the stop begins, how long calls gRPC already took get to reach their handlers
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING

# Each adds one servicer to a server and returns the full name of its service.
ServiceAdder = Callable[[grpc.aio.Server], str]


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message limits, and the keepalive pings of the previous tier's link allowed.

    The option's name is the string behind gRPC core's ``GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS``;
    without it a server allows one ping in 5 min on an idle connection and sends the link's keepalive
    ``GOAWAY too_many_pings``, which the link sees as its next tier going down.
    """
    return [
        *channel_options(max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ]


async def run_tier(
    settings: TierSettings,
    node: TierNode,
    services: Sequence[ServiceAdder],
    helpers: Sequence[Helper] = (),
    guards: Sequence[grpc.aio.ServerInterceptor] = (),
) -> None:
    """Serve until SIGINT/SIGTERM, then drain (see the module docstring).

    ``guards`` run before everything else (the device's token check).
    """
    credentials = server_credentials(settings)
    interceptors = [*guards, ServingInterceptor(node.pipeline, node.drain)]
    if credentials is not None and settings.tier is not Tier.DEVICE:
        interceptors.insert(0, PeerTierCheck(settings.tier))
    server = grpc.aio.server(interceptors=interceptors, options=server_options(settings.max_message_bytes))
    names = [add(server) for add in services]
    health_servicer = _add_health_and_reflection(server, names if settings.reflection else None)
    bound = (
        server.add_insecure_port(settings.address)
        if credentials is None
        else server.add_secure_port(settings.address, credentials)
    )
    if bound == 0:
        raise OSError(f"cannot bind the {settings.tier.value} to {settings.address}")
    if settings.metrics_port:
        helpers = [*helpers, serve_metrics(node.metrics.registry, settings.host, settings.metrics_port)]
        log.info("%s metrics on http://%s:%d/metrics", settings.tier.value, settings.host, settings.metrics_port)
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, SERVING)
    _report_next_tier(node, health_servicer)
    node.start()
    models = ", ".join(m.name for m in node.registry)
    log.info("%s serving %s on %s (pid %d)", settings.tier.value, models, settings.address, os.getpid())

    lifecycle = Lifecycle()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lifecycle.stop_requested.set)
    running = [asyncio.create_task(helper(lifecycle)) for helper in helpers]
    await lifecycle.stop_requested.wait()
    await _drain(settings, node, server, health_servicer, lifecycle)
    await asyncio.gather(*running)
    await node.close()


def _add_health_and_reflection(server: grpc.aio.Server, names: Sequence[str] | None) -> health.aio.HealthServicer:
    """Health, and reflection over ``names`` (None: no reflection)."""
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if names is not None:
        enable_reflection(server, [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name])
    return health_servicer


def _report_next_tier(node: TierNode, health_servicer: health.aio.HealthServicer) -> None:
    """Keep ``next-tier`` on health (and the metrics gauge) in step with the link's view of the next tier."""
    if node.link is None:
        return
    tasks: set[asyncio.Task[None]] = set()

    def changed(up: bool) -> None:
        node.metrics.observe_next_tier(up)
        task = asyncio.create_task(health_servicer.set(NEXT_TIER_HEALTH, SERVING if up else NOT_SERVING))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    node.link.on_reachable = changed


async def _drain(
    settings: TierSettings,
    node: TierNode,
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer,
    lifecycle: Lifecycle,
) -> None:
    tier = settings.tier.value
    log.info("%s draining: NOT_SERVING for %.1f s while still serving", tier, settings.drain_grace_s)
    lifecycle.draining.set()
    await health_servicer.enter_graceful_shutdown()
    await asyncio.sleep(settings.drain_grace_s)
    log.info("%s refusing new requests; finishing those it accepted (at most %.1f s)", tier, settings.drain_timeout_s)
    node.drain.closing.set()  # new calls are refused UNAVAILABLE from now on (the ServingInterceptor)
    lifecycle.stopping.set()
    deadline = time.monotonic() + settings.drain_timeout_s
    # A call let in just before the closing counts as in flight a moment later (and a stream opened then
    # counts as open): cutting the calls left before then would cancel it instead of letting it finish.
    await asyncio.sleep(min(CALLS_SETTLE_S, settings.drain_timeout_s))
    while (node.admission.in_flight or node.drain.open_streams) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await server.stop(0)  # what is left are health watches and reflection: cut them
    log.info("%s stopped", tier)


def tier_service(node: TierNode) -> ServiceAdder:
    """The ``Tier`` service (``Continue``) that the edge and the cloud serve."""

    def add(server: grpc.aio.Server) -> str:
        pb_grpc.add_TierServicer_to_server(TierServicer(node), server)
        return pb.DESCRIPTOR.services_by_name["Tier"].full_name

    return add


async def serve_resuming_tier(settings: TierSettings) -> None:
    """Run a tier that only resumes samples: the edge or the cloud (as a pool of processes with ``workers > 1``)."""
    if settings.workers > 1:
        await serve_workers(settings)
        return
    node = TierNode.from_settings(settings)
    await run_tier(settings, node, [tier_service(node)])
