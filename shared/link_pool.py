"""Links to a pool of next-tier replicas behind one DNS name: one :class:`TierLink` per replica.

``docker compose up --scale cloud=3`` (Docker's DNS) and a headless Kubernetes
Service both answer a service's name with one address per replica. A single
gRPC stream would stay on one of them for its life, so the pool keeps a
:class:`~splitexit.shared.link.TierLink` (its own stream and health watch) per
address and spreads samples over the replicas that report SERVING, in turn.
It looks the name up again every :data:`RESOLVE_EVERY_S`, adding links for new
replicas and closing those of replicas gone.

A sample whose replica cannot take it (unreachable, its stream broke when it
died, or overloaded) is sent to another replica within what its deadline has
left; only when every replica failed it, or none is serving, does the caller
see the failure (and may answer degraded). A sample that ran out of time is not
retried.

:func:`open_link` picks: a single :class:`TierLink` for an IP address, a pool
for a name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence

import grpc

from splitexit.shared.errors import NextTierOverloaded, NextTierUnavailable, ServingError
from splitexit.shared.link import Answers, Dial, Link, TierLink, answer_of
from splitexit.shared.proto import splitexit_pb2 as pb

log = logging.getLogger(__name__)
RESOLVE_EVERY_S = 2.0
RETRIED = (NextTierUnavailable, NextTierOverloaded)  # another replica may well take the sample

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_replicas(host: str, port: int) -> list[str]:
    """``ip:port`` of every address ``host`` resolves to (IPv4 first, as container DNS answers), sorted."""
    loop = asyncio.get_running_loop()
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            found = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except socket.gaierror:
            continue
        if found:
            return sorted({_join(info[4][0], port) for info in found})
    return []


def _join(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def open_link(
    address: str,
    max_message_bytes: int,
    dial: Dial = grpc.aio.insecure_channel,
    columns: bool = True,
    connections: int = 1,
) -> Link:
    """A :class:`TierLink` to an ``ip:port``; a :class:`LinkPool` over the replicas of a ``name:port``, or over
    ``connections`` > 1 connections to each."""
    host = address.rpartition(":")[0].strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass  # a name: a pool over the replicas it resolves to
    else:
        if connections == 1:
            return TierLink(address, max_message_bytes, dial=dial, columns=columns)
    # an IP address with several connections is a pool too: it resolves to itself, one replica
    return LinkPool(address, max_message_bytes, dial=dial, columns=columns, connections=connections)


class LinkPool:
    """The next tier as a pool of :class:`TierLink`\\ s, ``connections`` per replica (each its own connection: a
    replica that is a worker pool on one port gets them spread over its workers by the kernel); a :class:`Link`
    as each of them is."""

    def __init__(
        self,
        address: str,
        max_message_bytes: int,
        *,
        resolve: Resolver = resolve_replicas,
        dial: Dial = grpc.aio.insecure_channel,
        columns: bool = True,
        connections: int = 1,
    ) -> None:
        self._dial = dial
        self._columns = columns
        self._connections = connections
        self.address = address
        host, _, port = address.rpartition(":")
        self._host, self._port = host, int(port)
        self._max_message_bytes = max_message_bytes
        self._resolve = resolve
        self.replicas: dict[str, list[TierLink]] = {}  # replica address -> its links, one per connection
        self.reachable: bool | None = None  # any replica serving; None until one reports
        self.on_reachable: Callable[[bool], None] = lambda up: None
        self._turn = itertools.count()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Look the name up now and every :data:`RESOLVE_EVERY_S` (needs the running event loop)."""
        self._task = asyncio.create_task(self._keep_resolving())

    async def call(self, request: pb.ContinueRequest, timeout_s: float) -> pb.InferResponse:
        """The answer of one replica, the next in turn; on a failure of that replica, another's."""
        return await answer_of(self, request, timeout_s)

    async def call_many(self, requests: Sequence[pb.ContinueRequest], timeouts_s: Sequence[float]) -> Answers:
        """Every request sent together to one replica, the next in turn; those it failed, to another, within what
        their deadlines have left; (index, answer or error) of each as they come."""
        loop = asyncio.get_running_loop()
        deadlines = [loop.time() + timeout_s for timeout_s in timeouts_s]
        todo = list(range(len(requests)))
        failures: dict[int, ServingError] = {}
        tried: set[TierLink] = set()
        while todo and (link := self._next_link(tried)) is not None:
            tried.add(link)
            retry: list[int] = []
            sent = link.call_many([requests[i] for i in todo], [deadlines[i] - loop.time() for i in todo])
            async with contextlib.aclosing(sent) as chunks:
                async for chunk in chunks:
                    answered = []
                    for j, outcome in chunk:
                        if isinstance(outcome, RETRIED):
                            retry.append(todo[j])
                            failures[todo[j]] = outcome
                        else:
                            answered.append((todo[j], outcome))
                    if answered:
                        yield answered
            if retry:
                log.info(
                    "replica %s of %s failed %d samples (%s); trying another",
                    link.address,
                    self._host,
                    len(retry),
                    failures[retry[0]].message,
                )
            todo = sorted(retry)
        if todo:
            none = NextTierUnavailable(f"no replica of the next tier at {self.address} is serving")
            yield [(i, failures.get(i, none)) for i in todo]

    def _next_link(self, tried: set[TierLink]) -> TierLink | None:
        """The next link in turn (over replicas, then their connections) that has not failed these samples and
        whose replica is not known to be down."""
        candidates = [
            link
            for _, links in sorted(self.replicas.items())
            for link in links
            if link not in tried and link.reachable is not False
        ]
        return candidates[next(self._turn) % len(candidates)] if candidates else None

    async def _keep_resolving(self) -> None:
        while True:
            try:
                replicas = await self._resolve(self._host, self._port)
            except OSError as exc:  # keep the links we have; the next look-up may work
                log.warning("looking up %s failed: %s", self._host, exc)
            else:
                await self._update(replicas)
            await asyncio.sleep(RESOLVE_EVERY_S)

    async def _update(self, replicas: list[str]) -> None:
        for address in replicas:
            if address not in self.replicas:
                log.info("%s: replica %s joins", self._host, address)
                links = [
                    TierLink(
                        address,
                        self._max_message_bytes,
                        on_reachable=lambda up: self._recount(),
                        dial=self._dial,
                        columns=self._columns,
                    )
                    for _ in range(self._connections)
                ]
                self.replicas[address] = links
                for link in links:
                    link.start()
        for address in [a for a in self.replicas if a not in replicas]:
            log.info("%s: replica %s left", self._host, address)
            for link in self.replicas.pop(address):
                await link.close()
        self._recount()

    def _recount(self) -> None:
        states = [link.reachable for links in self.replicas.values() for link in links]
        up = True if True in states else (None if None in states else False)  # no replica at all: False
        if up is not None and up != self.reachable:
            self.reachable = up
            self.on_reachable(up)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for links in list(self.replicas.values()):
            for link in links:
                await link.close()
        self.replicas.clear()
